"""Where the work runs: the ingest's Spark session and the Ray of training and drafting.

Local by default (Spark local[*], a Ray started by the program), a cluster by config,
spark-submit or RAY_ADDRESS. Heavy imports (pyspark, ray) stay inside functions so that
`radgpt --help` is fast. A local Spark or Ray started here listens on 127.0.0.1 only
(docs/operations.md, "Local runs"); radgpt.exits stops them on every way out.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from radgpt.runtime import bounded, quietly

log = logging.getLogger("radgpt")

# spark-submit options that set a Spark property (SparkSubmitArguments), as PYSPARK_SUBMIT_ARGS
# may carry them besides --conf
_SUBMIT_OPTIONS = {
    "--master": "spark.master",
    "--name": "spark.app.name",
    "--driver-memory": "spark.driver.memory",
    "--driver-java-options": "spark.driver.extraJavaOptions",
    "--driver-cores": "spark.driver.cores",
    "--executor-memory": "spark.executor.memory",
    "--executor-cores": "spark.executor.cores",
    "--num-executors": "spark.executor.instances",
}


def _submitted_spark_conf() -> dict[str, str]:
    """The Spark properties spark-submit was given (--conf, --master, --name, ...).

    Under spark-submit (the spark-operator, YARN, by hand) the driver JVM already runs and holds
    them: Python was started with PYSPARK_GATEWAY_PORT, and SparkConf() reads the JVM's settings.
    Otherwise pyspark starts its JVM itself through spark-submit with PYSPARK_SUBMIT_ARGS (the
    nightly pod puts --conf there): those are read from the variable, before the JVM starts, so
    that JVM options of the session (driver memory, extraJavaOptions) still apply at its start.
    """
    import shlex

    if "PYSPARK_GATEWAY_PORT" in os.environ:
        from pyspark import SparkConf, SparkContext

        SparkContext._ensure_initialized()  # connect to spark-submit's JVM (it is running)
        submitted = dict(SparkConf().getAll())
        # without --name, spark-submit names the application after its script: not a choice
        if submitted.get("spark.app.name") == Path(sys.argv[0]).name:
            del submitted["spark.app.name"]
        return submitted
    words = shlex.split(os.environ.get("PYSPARK_SUBMIT_ARGS", ""))
    submitted = {}
    for i, word in enumerate(words):
        option, eq, value = word.partition("=")
        if not eq:  # `--conf k=v`, not `--conf=k=v`
            value = words[i + 1] if i + 1 < len(words) else ""
        if option in ("--conf", "-c"):
            key, _, value = value.partition("=")
            submitted[key] = value
        elif option in _SUBMIT_OPTIONS:
            submitted[_SUBMIT_OPTIONS[option]] = value
    return submitted


def spark_session(cfg, app_name: str | None = None):
    """The active session, else one built from cfg.spark (local[*] by default).

    Precedence, as spark-submit users expect: what spark-submit was given (--master, --name,
    --conf, also through PYSPARK_SUBMIT_ARGS) > cfg.spark.conf > the defaults below. A key is set
    here only when spark-submit did not set it, so the spark-operator's settings for a
    SparkApplication (executor instances, cores, memory) win over the config file.
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    # local executors must run this interpreter (the venv), not whatever `python3` is on PATH
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    submitted = _submitted_spark_conf()
    ours = {
        "spark.app.name": app_name or cfg.spark.app_name,
        "spark.master": os.environ.get("SPARK_MASTER", cfg.spark.master),
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        # Spark's `[Stage 14:===>  (2 + 2) / 4]` bars on a terminal only: a log (cron, k8s)
        # gets the ingest's own INFO lines; spark.conf or spark-submit may set it either way
        "spark.ui.showConsoleProgress": "true" if sys.stderr.isatty() else "false",
        "spark.sql.shuffle.partitions": "8",
        "spark.driver.memory": "2g",
        # the ingest caches only narrow key rows (~150 bytes a row): encoding them for the cache
        # cost the JVM ~0.5-1 CPU-s per 100k reports and saved little memory
        "spark.sql.inMemoryColumnarStorage.compressed": "false",
    }
    master = submitted.get("spark.master") or cfg.spark.conf.get(
        "spark.master", ours["spark.master"]
    )
    if master.startswith("local"):
        # a local run listens on loopback only: the driver's RPC and block manager bind 127.0.0.1
        # and the UI is off (spark.conf spark.ui.enabled=true turns it on: on 127.0.0.1 through
        # SPARK_LOCAL_IP, without its kill links)
        ours |= {"spark.driver.bindAddress": "127.0.0.1", "spark.driver.host": "127.0.0.1",
                 "spark.ui.enabled": "false", "spark.ui.killEnabled": "false"}  # fmt: skip
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    if "PYSPARK_GATEWAY_PORT" not in os.environ:
        # the JVM starts here (under spark-submit it already runs): a nightly job is one
        # short-lived JVM whose queries touch narrow key rows only, so the C2 JIT's compile time
        # is not won back; C1 alone cut a 20k-report ingest 18.0 -> 14.8 s end to end
        # (docs/benchmarks.md, round 5). Set this key in spark.conf to choose other flags.
        ours["spark.driver.extraJavaOptions"] = "-XX:TieredStopAtLevel=1"
    # Python workers import radgpt by name with their cwd first on sys.path: a `radgpt/` folder
    # there (a data root, say) would shadow an editable install as a namespace package. Putting
    # the package's parent on the workers' PYTHONPATH makes the import find the real package.
    pkg_parent = str(Path(__file__).resolve().parent.parent)
    paths = [pkg_parent, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    ours["spark.executorEnv.PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    b = SparkSession.builder
    for k, v in {**ours, **cfg.spark.conf}.items():
        if k not in submitted:
            b = b.config(k, v)
    spark = b.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def init_ray(cfg):
    """Connect to cfg.ray.address / RAY_ADDRESS, else start a local Ray sized by cfg.ray.num_cpus."""
    import ray

    if ray.is_initialized():
        quiet_ray()
        return ray
    addr = ray_address(cfg)
    env = {
        "env_vars": {
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            # a worker's bars (transformers' "Loading weights") reach the driver's log as
            # redrawn lines: the run's own progress is the driver's (radgpt.draft.progress)
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        }
    }
    if not sys.stderr.isatty():  # workers' lines reach the log without ANSI colour codes
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")
    quiet_ray()
    with _keeping_sigterm(ray):
        if addr:
            ray.init(address=addr, namespace=cfg.ray.namespace, runtime_env=env, log_to_driver=True)
        else:
            _init_local_ray(ray, cfg, env)
    quiet_ray()
    return ray


def ray_address(cfg) -> str | None:
    """The Ray cluster a run joins (cfg.ray.address, else RAY_ADDRESS); None: a local Ray."""
    return cfg.ray.address or os.environ.get("RAY_ADDRESS") or None


def quiet_ray() -> None:
    """Ray's console output at WARNING and above, as every library's (setup_logging), and no Ray
    Data progress output: the run reports its own progress (radgpt.draft.progress), once.

    Ray's loggers ("ray", "ray.data") print through handlers of their own at INFO: those handlers
    move to WARNING (Ray Data's session log file keeps everything). Ray Data's progress, when
    stdout is not a terminal, is a 10-line INFO block every 10 s; on a terminal, bars beside the
    run's own. It is turned off, without Ray Data's warning that it is off.
    """
    import ray.data
    from ray.util.debug import log_once

    for name in ("ray", "ray.data"):
        for h in logging.getLogger(name).handlers:
            console = isinstance(h, logging.StreamHandler) and not isinstance(
                h, logging.FileHandler
            )
            if console and h.level < logging.WARNING:
                h.setLevel(logging.WARNING)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.enable_operator_progress_bars = False
    log_once("ray_data_progress_manager_disabled")  # marks it said: Ray Data warns once


# Ray Train's detached placement-group cleaner asks Ray's state API, which the dashboard serves,
# once a second whether the training controller still lives, and warns each time it cannot
PG_CLEANER_LOG = "ray.train.v2._internal.execution.controller.placement_group_cleaner"


def quiet_ray_worker() -> None:
    """worker_process_setup_hook of a local Ray without its dashboard (ray.dashboard false): the
    cleaner's warning would reach the log twice a second for the whole training run (900 lines in
    8 minutes). What it guards, a dead controller's placement groups, ends with the local Ray,
    which the program stops; its warnings are dropped, Ray Train's others stay."""
    logging.getLogger(PG_CLEANER_LOG).setLevel(logging.ERROR)


@contextlib.contextmanager
def _keeping_sigterm(ray):
    """ray.init installs a SIGTERM handler of its own (sys.exit(15)): a Python handler the
    program installed (radgpt.exits.exit_on_sigterm) stays, also while Ray starts, so that a
    SIGTERM then still stops what has started. SIG_DFL: Ray's handler, as Ray means it."""
    prev = signal.getsignal(signal.SIGTERM)
    if not callable(prev):
        yield
        return
    from ray._private import ray_constants

    utils = getattr(ray._private, "utils", None)
    real = getattr(utils, "set_sigterm_handler", None)
    if real is not None:
        utils.set_sigterm_handler = lambda handler: None
    # the driver's core worker would install absl's crash handler, which takes SIGTERM too
    # (prints a stack, aborts): not in this process (Ray's workers keep theirs)
    crash = getattr(ray_constants, "RAY_DISABLE_FAILURE_SIGNAL_HANDLER", False)
    ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER = True
    try:
        yield
    finally:
        if real is not None:
            utils.set_sigterm_handler = real
        ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER = crash
        signal.signal(signal.SIGTERM, prev)


def _init_local_ray(ray, cfg, env: dict) -> None:
    """Start a local Ray whose every port listens on 127.0.0.1 (docs/operations.md).

    Ray binds its servers to all interfaces unless its node address is loopback, which it
    chooses by itself only where clusters are off (ray_constants.ENABLE_RAY_CLUSTER, macOS and
    Windows); ray.init(_node_ip_address="127.0.0.1") is turned back into the host's address. So
    that switch is off while this node starts (it is read then). The dashboard: ray.dashboard.
    """
    from ray._private import ray_constants

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report, no metadata probes
    was = getattr(ray_constants, "ENABLE_RAY_CLUSTER", True)
    ray_constants.ENABLE_RAY_CLUSTER = False  # tests/test_exits.py checks the listening sockets
    if not cfg.ray.dashboard:  # no state API: see quiet_ray_worker
        hook = f"{quiet_ray_worker.__module__}.{quiet_ray_worker.__name__}"  # follows a move
        env = {**env, "worker_process_setup_hook": hook}
    try:
        ray.init(
            num_cpus=cfg.ray.num_cpus,
            namespace=cfg.ray.namespace,
            runtime_env=env,
            include_dashboard=cfg.ray.dashboard,
            dashboard_host="127.0.0.1",
            log_to_driver=True,
        )
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = was
    token = Path.home() / ".ray" / "auth_token"  # Ray's token auth writes it with the umask's mode
    if token.is_file() and token.stat().st_uid == os.getuid():
        token.chmod(0o600)


def cancel_spark_jobs(spark, wait_s: float = 20.0) -> None:
    """Cancel a session's jobs and wait (at most wait_s) until none of its tasks runs, so that
    files removed next are not written again by a task that was still running."""

    def cancel():
        sc = spark.sparkContext
        sc.cancelAllJobs()
        tracker, end = sc._jsc.sc().statusTracker(), time.monotonic() + wait_s
        while time.monotonic() < end and any(
            e.numRunningTasks() for e in tracker.getExecutorInfos()
        ):
            time.sleep(0.2)

    if not bounded(lambda: quietly(cancel), wait_s + 5):
        log.warning("Spark jobs still running after %g s", wait_s)


def active_spark():
    """This process's active SparkSession, or None (without importing pyspark when no session
    can exist)."""
    sql = sys.modules.get("pyspark.sql")
    return sql.SparkSession.getActiveSession() if sql is not None else None


def stop_spark(spark, timeout_s: float = 60.0) -> None:
    """Stop a session (or SparkContext) this program started and end its JVM (frees ~1 GB
    before drafting).

    SparkSession.stop() leaves the py4j gateway JVM running; a later step in the same process
    would share the machine with it. The stop runs in a helper thread (`bounded`): when it
    does not end in timeout_s, the JVM is terminated (its shutdown hook stops the context).
    """
    from pyspark import SparkContext

    bounded(lambda: quietly(spark.stop), timeout_s)
    SparkContext._active_spark_context = None
    gw = SparkContext._gateway
    if gw is None:
        return
    try:
        gw.shutdown()
    except Exception:  # noqa: BLE001 - best effort: the JVM may already be gone
        pass
    proc = getattr(gw, "proc", None)
    if proc is not None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
    SparkContext._gateway = None
    SparkContext._jvm = None
