"""Prefect flows, deployments and the command line: thin faces over the plain modules of `pipeline`,
`generators` and `evaluation`.

`spec` declares a run's parameters, `steps` the plain steps, `cache` the model cache, `publish` the run folders and
request outputs, `registry` the registered models, `synthesize` the flows, `scale` the Dask fan-out, `deploy` the
deployments, `server` the Prefect API a command talks to, `arguments`, `terminal` and `cli` the command line.
Importing this package changes nothing in the environment: the command line sets Prefect's defaults for its
own process (`server.prefect_defaults`).
"""
