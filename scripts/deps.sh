#!/usr/bin/env bash
# deps.sh installs what lanmesh's build, tests, demo and bench need on a
# fresh Debian 12 machine, as root. Idempotent: it installs only what is
# missing and prints nothing when everything is already there.
#
#   scripts/deps.sh [demo|full] [--print-path]
#
# Profiles: "full" (the default: make test, lint, bench and CI) installs
# everything below; "demo" (make demo) only what the demo runs: iproute2
# and nftables for the namespace world and its NATs, ping, and dnsmasq for
# the name-resolution step. No Go tools for the demo.
#
# Debian packages go in with --no-install-recommends because with
# recommends wireguard-tools alone pulls a kernel image and a systemd
# upgrade. Go tools are pinned so CI and developers run the same ones.
set -euo pipefail

# Debian packages the demo runs (make demo). Keep it to what
# cmd/lanmesh-demo and internal/testbed execute: every package here is
# install time before a stranger's first packet.
DEMO_APT_PACKAGES=(
	make
	nftables
	iproute2
	iputils-ping
	dnsmasq-base
)

# Debian packages the whole suite needs. Add new ones here (qemu, chromium,
# postgres...) and nowhere else.
APT_PACKAGES=(
	make
	nftables
	wireguard-tools
	iperf3
	dnsmasq-base
	bind9-dnsutils
	conntrack
	iputils-ping
	socat
	tcpdump
	netcat-openbsd
	procps
	iproute2
	ca-certificates
	git
	shellcheck
	# plugin SDK: protoc regenerates plugins/sdk/internal/pb (make proto)
	protobuf-compiler
	# OIDC end-to-end: oidc-provider from npm runs on Node; chromedp drives Chromium
	nodejs
	chromium
	# VM tests (internal/vmtest): x86-64 and MIPS Malta guests under TCG.
	qemu-system-x86
	qemu-system-mips
)
# Extra packages can be asked for without editing this file.
# shellcheck disable=SC2206
APT_PACKAGES+=(${LANMESH_EXTRA_APT:-})

# Go tools, pinned: "binary module/path@version".
GO_TOOLS=(
	"staticcheck honnef.co/go/tools/cmd/staticcheck@v0.8.2"
	"protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12"
	"protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.0"
)

GO_ROOT=${GO_ROOT:-/usr/local/go}

profile=full
print_path=0
for arg in "$@"; do
	case $arg in
	demo | full) profile=$arg ;;
	--print-path) print_path=1 ;;
	*)
		printf 'deps: unknown argument %q (use: deps.sh [demo|full] [--print-path])\n' "$arg" >&2
		exit 2
		;;
	esac
done
if [[ $profile == demo ]]; then
	APT_PACKAGES=("${DEMO_APT_PACKAGES[@]}")
	GO_TOOLS=()
fi

log() { printf 'deps: %s\n' "$*" >&2; }
die() { printf 'deps: error: %s\n' "$*" >&2; exit 1; }

if [[ $(id -u) -ne 0 ]]; then
	die "run as root (apt-get and the namespace tests need it)"
fi

# --- Debian packages -------------------------------------------------------
# The MIPS router VM (internal/vmtest) runs Debian's mipsel kernel and
# busybox-static, fetched with `apt-get download PKG:mipsel`: the package
# index must know the architecture (nothing mipsel is installed).
need_update=0
if ! dpkg --print-foreign-architectures | grep -qx mipsel; then
	log "adding the mipsel architecture (package index only, for the MIPS VM)"
	dpkg --add-architecture mipsel
	need_update=1
fi
missing=()
for p in "${APT_PACKAGES[@]}"; do
	# dpkg-query prints "install ok installed" only for a fully installed package.
	if [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true) != "install ok installed" ]]; then
		missing+=("$p")
	fi
done
if ((need_update)); then
	log "apt-get update"
	apt-get update -qq >&2 || die "apt-get update failed: check the Debian mirror in /etc/apt/sources.list*"
fi
if ((${#missing[@]} > 0)); then
	log "installing Debian packages: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	# Refresh the index only when it is missing or older than a day, so a
	# second run on a fresh machine does not hit the mirror again.
	if ((!need_update)) && [[ -z $(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages' -mmin -1440 2>/dev/null | head -n1) ]]; then
		log "apt-get update"
		apt-get update -qq >&2 || die "apt-get update failed: check the Debian mirror in /etc/apt/sources.list*"
	fi
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
		die "apt-get install ${missing[*]} failed"
	log "Debian packages done"
fi

# Debian's nodejs ships without npm; NodeSource's includes it and conflicts
# with Debian's npm package, so npm is installed only when it is missing.
if ! command -v npm >/dev/null 2>&1; then
	log "installing npm"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >&2 ||
		die "apt-get install npm failed"
fi

# --- Go --------------------------------------------------------------------
if ! command -v go >/dev/null 2>&1; then
	if [[ -x $GO_ROOT/bin/go ]]; then
		export PATH=$GO_ROOT/bin:$PATH
	else
		die "no Go toolchain: install Go 1.26 into $GO_ROOT (https://go.dev/dl/) and re-run"
	fi
fi
gobin=$(go env GOBIN)
[[ -n $gobin ]] || gobin=$(go env GOPATH)/bin

for t in "${GO_TOOLS[@]+"${GO_TOOLS[@]}"}"; do
	bin=${t%% *}
	mod=${t#* }
	want=${mod##*@}
	# `go version -m` names the module version a binary was built from; a
	# different pin means reinstall.
	if [[ -x $gobin/$bin ]] && go version -m "$gobin/$bin" 2>/dev/null | grep -q "[[:space:]]${want}[[:space:]]"; then
		continue
	fi
	log "go install $mod"
	# Outside the module so the project's go.mod is never touched.
	(cd / && GOFLAGS='' go install "$mod") || die "go install $mod failed: check GOPROXY ($(go env GOPROXY))"
done

if ((print_path)); then
	# For callers that want the PATH the tools live on.
	printf '%s:%s\n' "$(dirname "$(command -v go)")" "$gobin"
fi
