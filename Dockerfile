# syntax=docker/dockerfile:1
# wagate: a static binary on distroless, running as non-root.
#   docker build --build-arg VERSION=$(git describe --tags --always) \
#                --build-arg COMMIT=$(git rev-parse HEAD) -t wagate .
#   docker run -p 8080:8080 -v wagate-data:/data wagate
# Without Docker, scripts/check-static.sh builds and checks the same binary.

FROM golang:1.26 AS build
WORKDIR /src
# Dependencies first, so source edits do not invalidate this layer.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
ARG DATE=unknown
# `make build` is the one definition of the release flags:
# CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X …version -X …commit -X …date".
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    make build VERSION="$VERSION" COMMIT="$COMMIT" DATE="$DATE" \
 && ./bin/wagate version \
 && mkdir -p /out/data && cp bin/wagate /out/wagate

# distroless/static: CA certificates, tzdata and /etc/passwd with the nonroot
# user (65532), no shell and no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/wagate /usr/local/bin/wagate
# The volume's mount point must belong to the user wagate runs as.
COPY --from=build --chown=65532:65532 /out/data /data
ENV WAGATE_DATA_DIR=/data \
    WAGATE_ADDR=:8080
VOLUME /data
EXPOSE 8080
USER 65532:65532
# No HEALTHCHECK: the image has no shell or curl to run one. Let the
# orchestrator probe GET /healthz (liveness) and GET /readyz (readiness).
ENTRYPOINT ["/usr/local/bin/wagate"]
CMD ["serve"]
