#!/usr/bin/env bash
# dist.sh VERSION [OUT]: builds the release archives of the broker in OUT
# (default dist/): one tar.gz per platform (linux and darwin, amd64 and
# arm64) holding the static binary, LICENSE, README.md and CHANGELOG.md;
# SHA256SUMS over the archives and the SBOM; and the SBOM itself,
# tidings_VERSION_sbom.txt: `go version -m` of every binary (the Go
# version, the module and every dependency with its version and sum).
# With helm (HELM, or on PATH), the Helm chart too, packaged with
# appVersion VERSION, so that its default image tag is the release's.
# The archives are reproducible: sorted entries, fixed owner and times.
set -euo pipefail

version=${1:?usage: dist.sh VERSION [OUT]}
out=${2:-dist}
go=${GO:-go}
platforms=(linux/amd64 linux/arm64 darwin/amd64 darwin/arm64)

cd "$(dirname "${BASH_SOURCE[0]}")/.."
rm -rf "$out"
mkdir -p "$out"
sbom="$out/tidings_${version}_sbom.txt"
: >"$sbom"
# Archive times are the last commit's, not the build's.
mtime=$(git log -1 --format=%cI 2>/dev/null || echo 1970-01-01T00:00:00Z)

for platform in "${platforms[@]}"; do
	os=${platform%/*}
	arch=${platform#*/}
	name="tidings_${version}_${os}_${arch}"
	dir="$out/$name"
	mkdir -p "$dir"
	echo "dist: $name"
	CGO_ENABLED=0 GOOS=$os GOARCH=$arch "$go" build -trimpath \
		-ldflags "-s -w -X main.version=$version" -o "$dir/broker" ./cmd/broker
	cp LICENSE README.md CHANGELOG.md "$dir/"
	{
		echo "# $name"
		"$go" version -m "$dir/broker"
		echo
	} >>"$sbom"
	tar -C "$out" --sort=name --mtime="$mtime" --owner=0 --group=0 --numeric-owner \
		-czf "$out/$name.tar.gz" "$name"
	rm -rf "$dir"
done

helm=${HELM:-$(command -v helm || true)}
if [[ -n $helm && -x $helm ]]; then
	"$helm" package deploy/helm/tidings --app-version "$version" -d "$out" >/dev/null
fi

(cd "$out" && shopt -s nullglob && sha256sum -- *.tar.gz *.tgz "$(basename "$sbom")" >SHA256SUMS)
echo "dist: $(ls "$out" | tr '\n' ' ')"
