#!/usr/bin/env bash
# dist-test.sh: runs dist.sh into a temporary directory with a test
# version and checks what a release holds: the four archives, checksums
# that verify, an SBOM naming the broker's dependencies, and a
# linux/amd64 binary whose -version prints the stamped version.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
version=v0.0.0-disttest
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

scripts/dist.sh "$version" "$out" >/dev/null

fail() { echo "dist-test: $*" >&2; exit 1; }
archives=4
if [[ -n ${HELM:-} && -x ${HELM:-} ]]; then
	chart=$(ls "$out"/tidings-*.tgz 2>/dev/null) || fail "no packaged chart"
	grep -qx "appVersion: $version" <<<"$(tar -xzOf "$chart" tidings/Chart.yaml)" || fail "the chart's appVersion is not $version"
	archives=5
fi
for platform in linux_amd64 linux_arm64 darwin_amd64 darwin_arm64; do
	archive="$out/tidings_${version}_${platform}.tar.gz"
	[[ -f $archive ]] || fail "no $archive"
	listing=$(tar -tzf "$archive")
	for f in broker LICENSE README.md CHANGELOG.md; do
		grep -qx "tidings_${version}_${platform}/$f" <<<"$listing" || fail "$archive holds no $f"
	done
done
(cd "$out" && sha256sum --quiet -c SHA256SUMS) || fail "checksums do not verify"
[[ $(wc -l <"$out/SHA256SUMS") -eq $((archives + 1)) ]] || fail "SHA256SUMS lists $(wc -l <"$out/SHA256SUMS") files, want $((archives + 1))"
sbom="$out/tidings_${version}_sbom.txt"
for module in github.com/redis/go-redis/v9 github.com/gobwas/ws go.opentelemetry.io/otel; do
	grep -q "dep	$module	" "$sbom" || fail "the SBOM does not name $module"
done
tar -C "$out" -xzf "$out/tidings_${version}_linux_amd64.tar.gz"
got=$("$out/tidings_${version}_linux_amd64/broker" -version)
[[ $got == "$version" ]] || fail "broker -version printed \"$got\", want \"$version\""
echo "dist-test: ok ($version: $archives archives, checksums, SBOM, -version)"
