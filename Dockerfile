# Tidings broker image: a static binary on distroless, running as non-root.
#
#   docker build --build-arg VERSION="$(git describe --tags --always --dirty)" -t tidings .
#
# Multi-platform (the build stage cross-compiles on the builder's platform):
#
#   docker buildx build --platform linux/amd64,linux/arm64 --build-arg VERSION=… -t tidings .
#
# deploy/tools/dockerfile checks this file (make helm-test).

# build cross-compiles the broker on the builder's own platform.
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src
# Modules first, so that a change to the sources reuses this layer.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG TARGETOS
ARG TARGETARCH
# A static binary (no cgo), with no file system paths or debug symbols in
# it, and the version that the broker logs at start.
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/broker ./cmd/broker

# distroless/static: CA certificates, /etc/passwd with the nonroot user
# (65532), tzdata, and no shell or package manager.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/broker /broker
# Numeric, so that Kubernetes can verify runAsNonRoot without a passwd lookup.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/broker"]
