#!/usr/bin/env bash
# run-integration.sh - runs the pytest integration suite (tests/integration) as root; extra arguments go to pytest.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

dir=tests/integration
# Debian's interpreter: the python3 first on PATH may be another build without Debian's pytest.
py=/usr/bin/python3

if [ "$(id -u)" -ne 0 ]; then
	echo "integration: needs root (it creates network namespaces and veth pairs, and pandit loads BPF); run as root" >&2
	exit 1
fi
if ! "$py" -c 'import pytest' 2>/dev/null; then
	echo "integration: $py cannot import pytest; 'make deps' installs python3-pytest" >&2
	exit 1
fi

"$py" -m pytest -q "$dir" "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
	# pytest's 5 is "no tests collected": fine while the suite has no files,
	# a failure once it has some (they were all skipped by selection or broken).
	if find "$dir" -name 'test_*.py' -o -name '*_test.py' | grep -q .; then
		echo "integration: test files exist in $dir but pytest collected no tests" >&2
		exit 1
	fi
	echo "integration: no test files in $dir yet"
	exit 0
fi
exit "$rc"
