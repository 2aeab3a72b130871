#!/usr/bin/env bash
# Image entrypoint (Dockerfile ENTRYPOINT, under tini). Spark on Kubernetes starts driver and
# executor pods with args `driver ...` / `executor` and no command, expecting the entrypoint of
# Spark's own images; this is that contract for the pip-installed pyspark. Anything else is run
# as given, e.g. `radgpt --help` or the CronJob's `args: [radgpt, nightly, ...]`: radgpt's
# manifests set `args:`, never `command:`, so tini stays PID 1 (tests/test_k8s.py). KubeRay sets
# the command of its Ray containers (`ray start ...`) itself, which bypasses this script.
set -eo pipefail

export SPARK_HOME="${SPARK_HOME:-$(python -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')}"
export PYSPARK_PYTHON="${PYSPARK_PYTHON:-python3}"

case "${1:-}" in
  driver)
    shift
    exec "${SPARK_HOME}/bin/spark-submit" \
      --conf "spark.driver.bindAddress=${SPARK_DRIVER_BIND_ADDRESS}" \
      --conf "spark.executorEnv.SPARK_DRIVER_POD_IP=${SPARK_DRIVER_BIND_ADDRESS}" \
      --deploy-mode client "$@"
    ;;
  executor)
    shift
    # the driver passes JVM options as SPARK_JAVA_OPT_<n> env vars, in order
    java_opts=()
    while IFS= read -r opt; do java_opts+=("${opt}"); done < <(
      env | grep '^SPARK_JAVA_OPT_' | sort -t_ -k4 -n | sed 's/^[^=]*=//'
    )
    exec "${JAVA_HOME}/bin/java" "${java_opts[@]}" \
      -Xms"${SPARK_EXECUTOR_MEMORY}" -Xmx"${SPARK_EXECUTOR_MEMORY}" \
      -cp "${SPARK_HOME}/conf:${SPARK_HOME}/jars/*${SPARK_CLASSPATH:+:${SPARK_CLASSPATH}}" \
      org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
      --driver-url "${SPARK_DRIVER_URL}" \
      --executor-id "${SPARK_EXECUTOR_ID}" \
      --cores "${SPARK_EXECUTOR_CORES}" \
      --app-id "${SPARK_APPLICATION_ID}" \
      --hostname "${SPARK_EXECUTOR_POD_IP}" \
      --resourceProfileId "${SPARK_RESOURCE_PROFILE_ID}" \
      --podName "${SPARK_EXECUTOR_POD_NAME}"
    ;;
  *)
    exec "$@"
    ;;
esac
