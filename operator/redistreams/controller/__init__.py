"""The Kubernetes operator: kopf handlers around the engine.

Kubernetes lives here only; the engine below it knows nothing of it. Modules, each
importing only those listed before it:

- conditions, kube    kstatus conditions; the few API calls kopf does not make
- objects             the watch's copy of our objects (Declared) and the Topic -> groups index
- status              what a reconcile result becomes in status: outcomes and fields
- reconciler          Kubernetes objects to engine batches (per connection), and deletion
- runtime             OperatorConfig, State (kept in kopf's memo), status writes, Events
- queue               the work queue: request_reconcile, one run per key at a time
- resync              the periodic pass over every object
- samples, observation  the observation pass: metrics, loss detection, retention
- handlers            kopf registration only; main runs the operator
"""
