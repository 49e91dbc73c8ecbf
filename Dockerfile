# syntax=docker/dockerfile:1
# Two stages: a builder with gcc (mattn/go-sqlite3 needs cgo) making a fully
# static binary with `make static`, and a minimal runtime image.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
RUN make static VERSION="$VERSION" COMMIT="$COMMIT" STATIC_OUT=/out/plugipay-sync \
 && mkdir -p /out/data

# distroless/static: CA certificates, /etc/passwd with the nonroot user, no shell.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/plugipay-sync /usr/local/bin/plugipay-sync
COPY --from=build --chown=65532:65532 /out/data /data
# The default config reads every setting from the environment; mount your
# own over it for more (config.example.yaml documents every key).
COPY deploy/image-config.yaml /etc/plugipay-sync/config.yaml
USER 65532:65532
# The state DB lives on this volume; losing it is safe but costs a full re-match.
VOLUME ["/data"]
ENV PLUGIPAY_SYNC_STATE=/data/plugipay-sync.db
# /metrics, /healthz, /readyz
EXPOSE 9464
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s \
  CMD ["/usr/local/bin/plugipay-sync", "--healthcheck", "http://127.0.0.1:9464/healthz"]
ENTRYPOINT ["/usr/local/bin/plugipay-sync"]
CMD ["--config", "/etc/plugipay-sync/config.yaml"]
