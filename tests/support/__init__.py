"""What the tests, the benches (bench/) and the demo (hack/demo.py) share; test modules
hold only tests and their fixtures and import from here, never from each other.

    redis_server   RedisServer: a real redis-server on a free loopback port
    controlplane   ControlPlane (etcd + kube-apiserver on loopback), Cluster (a small
                   API client), install_crds, wait_for; `python -m tests.support.controlplane`
                   starts one by hand
    kube           our resources on a cluster (create/get/wait_ready/condition/kstatus),
                   namespaces, Events, the operator under the chart's ClusterRole
    manifests      manifest text for the CLI (topic/group/write, TOPICS)
    cli            the `redistreams` CLI run as a subprocess (the `cli` fixture)
    goclient       the real Go driver's client: build it, run it
    workloads      BusyStream: a publisher and consumers on one stream while retention runs
    aio            run(): a coroutine with a deadline
    net            free_port(), ReservedPort (a port held for a server, or where nothing listens)

Imported as ``tests.support.<module>``, with the repository root as the import root:
`tests` (and each test folder) and `bench` are packages, pytest puts the root on the path
(`pythonpath = ["."]` in pyproject.toml), and benches and the demo run as modules from the
root (`python -m bench.apply`, `python -m hack.demo`, as `make bench`/`make run` do). No
sys.path edits anywhere, and test support never ships: the wheel holds only
operator/redistreams (installing it through the test extra would have meant packaging it).
"""
