"""The Kubernetes operator: kopf handlers around the engine.

Kubernetes lives here only; the engine below it knows nothing of it. Modules, each
importing only those listed before it:

- conditions, kube    kstatus conditions; the few API calls kopf does not make
- reconciler          Kubernetes objects to engine batches and back to status fields
- runtime             OperatorConfig, State (kept in kopf's memo), status writes, Events
- queue               the work queue: request_reconcile, one run per key at a time
- resync              the periodic pass over every object
- samples, observation  the observation pass: metrics, loss detection, retention
- handlers            kopf registration only; main runs the operator
"""
