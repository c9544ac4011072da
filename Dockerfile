# identityd container image: `docker build -t identityd:0.1.0 .` (see README, "Deploying").
# The build stage and the runtime stage share Debian 12, so the binary finds the same glibc.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin identityd \
    && install -D -m 0755 target/release/identityd /out/identityd \
    && install -d -o 65532 -g 65532 /out/data

# Runtime: distroless, so no shell and no package manager; it holds the C runtime the
# binary links, CA certificates and a non-root user (65532), and nothing else.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/identityd /usr/local/bin/identityd
# Only for a single container on SQLite; the Helm chart uses PostgreSQL and a read-only root.
COPY --from=build /out/data /var/lib/identityd
WORKDIR /var/lib/identityd
USER 65532:65532
ENV IDENTITYD_LISTEN=0.0.0.0:50051 \
    IDENTITYD_HTTP_LISTEN=0.0.0.0:9090 \
    IDENTITYD_DATABASE_URL=sqlite:///var/lib/identityd/identityd.db \
    IDENTITYD_LOG_FORMAT=json
EXPOSE 50051 9090
ENTRYPOINT ["/usr/local/bin/identityd"]
CMD ["serve"]
