"""An app whose import fails, as a bad deploy would."""
raise RuntimeError("the app is broken on purpose")
