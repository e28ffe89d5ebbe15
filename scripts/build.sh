#!/usr/bin/env bash
# build.sh builds one lanmesh command.
#
#   scripts/build.sh NAME OUT OPTIONAL PLATFORM "LDFLAGS_X"
#
# PLATFORM is "host" (a normal, unstripped build for tests and the demo)
# or os/arch[/variant] (variant = GOMIPS for mips*, GOARM for arm): a
# stripped, reproducible router build. OPTIONAL=1 skips a command whose
# package has no main yet instead of failing.
set -euo pipefail

name=$1 out=$2 optional=$3 platform=$4 ldx=${5:-}
cd "$(dirname "$0")/.."
pkg=./cmd/$name

# `go list` answers "main" only for a buildable main package.
kind=$(go list -f '{{.Name}}' "$pkg" 2>/dev/null || true)
if [[ $kind != main ]]; then
	if [[ $optional == 1 ]]; then
		echo "build: skip $name ($pkg has no main package yet)"
		exit 0
	fi
	echo "build: $pkg is not a main package:" >&2
	go list "$pkg" >&2 || true
	exit 1
fi

mkdir -p "$(dirname "$out")"
export CGO_ENABLED=0
if [[ $platform == host ]]; then
	echo "build: $out"
	exec go build -trimpath -ldflags "$ldx" -o "$out" "$pkg"
fi

IFS=/ read -r os arch variant <<<"$platform"
export GOOS=$os GOARCH=$arch
case $arch in
mips | mipsle) export GOMIPS=${variant:-softfloat} ;;
arm) export GOARM=${variant:-7} ;;
esac
echo "build: $out ($platform, stripped)"
exec go build -trimpath -ldflags "-s -w $ldx" -o "$out" "$pkg"
