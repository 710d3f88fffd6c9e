"""The Kubernetes operator: kopf handlers around the engine.

Kubernetes lives here only; the engine below it knows nothing of it.
"""
