# syntax=docker/dockerfile:1

# Build stage: the whole workspace, with the cargo registry and the target directory cached
# between builds (BuildKit cache mounts; `DOCKER_BUILDKIT=1`, the default with docker buildx).
FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p walcast \
    && install -D -m 0755 target/release/walcast /out/walcast

# Runtime stage: a slim Debian with CA certificates (for sslmode=require/verify-*) and an
# unprivileged user.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 walcast \
    && useradd --system --uid 10001 --gid walcast --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin walcast
COPY --from=builder /out/walcast /usr/local/bin/walcast
USER walcast:walcast
# Inside a container the service must listen on every interface; the binary's default is
# 127.0.0.1:8080. Liveness: GET /healthz; readiness: GET /readyz (see docs/deploy.md).
ENV WALCAST_LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["walcast"]
CMD ["serve"]
