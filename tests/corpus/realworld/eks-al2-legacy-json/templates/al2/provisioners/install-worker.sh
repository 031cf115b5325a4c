#!/usr/bin/env bash
set -o pipefail
set -o nounset
set -o errexit
echo "installing kubelet ${KUBERNETES_VERSION} from ${WORKING_DIR}"
