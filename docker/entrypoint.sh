#!/usr/bin/env bash
# Container entrypoint: starts the processor on Nuclio's image layout.
#
#   function code    /opt/nuclio (the working directory; override: NUCLIO_FUNCTION_CODE_DIR,
#                    which the rendered Kubernetes manifests set to /etc/nuclio/function
#                    when the handler file travels in the ConfigMap)
#   function config  /etc/nuclio/config/processor/processor.yaml (the processor's default
#                    --config; override: NUCLIO_PROCESSOR_CONFIG). When it is absent and the
#                    code directory holds a function.yaml, that one is used.
#   platform config  /etc/nuclio/config/platform/platform.yaml, passed only if it exists
#                    (override: NUCLIO_PLATFORM_CONFIG)
#
# Arguments are appended to the processor's command line, so they win over these
# defaults (the processor keeps the last value of a repeated option):
#   docker run IMAGE --log-level debug
# A first argument that is not an option runs that command instead:
#   docker run -it IMAGE bash
#   processor kube invoke --config ... --trigger ... --url ...   (a kube-mode CronJob's pod)
#
# `exec` makes the processor PID 1, so `docker stop`'s SIGTERM reaches it directly.
set -euo pipefail

if [[ $# -gt 0 && "$1" != -* ]]; then
    exec "$@"
fi

code_dir="${NUCLIO_FUNCTION_CODE_DIR:-/opt/nuclio}"
default_config=/etc/nuclio/config/processor/processor.yaml
default_platform=/etc/nuclio/config/platform/platform.yaml

args=(--function-dir "${code_dir}")

if [[ -z "${NUCLIO_PROCESSOR_CONFIG:-}" && ! -e "${default_config}" \
      && -f "${code_dir}/function.yaml" ]]; then
    args+=(--config "${code_dir}/function.yaml")
fi

if [[ -z "${NUCLIO_PLATFORM_CONFIG:-}" && -f "${default_platform}" ]]; then
    args+=(--platform-config "${default_platform}")
fi

exec processor "${args[@]}" "$@"
