"""redistreams: declarative Redis Streams topics and consumer groups."""

__version__ = "0.1.0"
