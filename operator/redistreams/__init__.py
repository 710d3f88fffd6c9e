"""redistreams: declarative Redis Streams topics and consumer groups."""

__version__ = "0.1.0"

# Shared by the CLI (which must start without loading the engine) and the engine.
DEFAULT_REGISTRY_KEY = "redistreams:owners"  # the hash of ownership records
DEFAULT_CLUSTER_ID = "default"  # owner identity when none is given
