"""gridwatch: the service between grid devices and the people who act on their alarms."""

__version__ = "0.1.0"
