r"""twin: a real-time digital twin of the 123\SmartBMS battery management system."""

__version__ = "0.1.0"
