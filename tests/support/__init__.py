"""Helpers both kinds of tests import: the repository's root and the pages of its docs, free
ports, waits, masters and brokers run as processes, clients, and a fake worker pool."""
