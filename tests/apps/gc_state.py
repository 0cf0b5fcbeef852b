"""What the test apps answer of their worker's garbage collector (workers.collector)."""
import gc


def of(server: object) -> dict:
    """The collector's thresholds, and whether the app's ``server`` is frozen (no collection
    walks what the app's import made)."""
    return {"thresholds": gc.get_threshold(),
            "app_frozen": not any(o is server for o in gc.get_objects())}
