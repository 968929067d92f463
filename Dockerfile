# syntax=docker/dockerfile:1
# Multi-stage build: compile with the full Rust image, run on a slim Debian with only the binary.
#   docker build -t customers-api .
# What goes into the build context is listed in .dockerignore (an allowlist).

FROM rust:1.95-slim-bookworm AS build
WORKDIR /app
# sqlx checks its queries at compile time; with SQLX_OFFLINE it reads them from .sqlx/ instead of
# asking a database, so the image builds without one.
ENV SQLX_OFFLINE=true \
    CARGO_TERM_COLOR=never
# Dependencies first, so that a change to the code alone reuses the cached dependency layer:
# this layer depends on Cargo.toml and Cargo.lock only, and builds every dependency against a
# stub crate.
COPY Cargo.toml Cargo.lock ./
# Patched dependencies (see [patch.crates-io] in Cargo.toml).
COPY vendor ./vendor
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src
# Everything the crate reads at compile time: the sqlx offline data, the migrations
# (sqlx::migrate!), the configuration files (include_str!) and the Swagger UI assets
# (include_bytes!, for /docs).
COPY .sqlx ./.sqlx
COPY migrations ./migrations
COPY config ./config
COPY assets ./assets
COPY src ./src
# The stub build above left newer timestamps on its artefacts than the real sources may have.
RUN touch src/main.rs src/lib.rs && cargo build --release --locked

FROM debian:bookworm-slim AS runtime
# Nothing is installed: the binary needs only glibc. Its TLS to PostgreSQL (rustls) carries the
# public root certificates compiled in, and a private CA is a file named by sslrootcert, so no
# CA bundle either. The health check below needs no curl.
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin app
WORKDIR /app
COPY --from=build /app/target/release/customers-api /usr/local/bin/customers-api
# Migrations and configuration files are compiled into the binary, so none are shipped. A file
# mounted at /app/config/production.toml (CONFIG_DIR is ./config) is laid over the compiled-in
# production profile. A copy of config/default.toml there would be laid over it too, and would
# undo the profile's settings (its JSON logs, for one), so the image ships none.
# The binary embeds Swagger UI (Apache-2.0), whose licence and NOTICE travel with it.
COPY --from=build /app/assets/swagger-ui/LICENSE /app/assets/swagger-ui/NOTICE \
    /app/assets/swagger-ui/SOURCE /app/assets/swagger-ui/swagger-ui-bundle.js.LICENSE.txt \
    /usr/share/doc/customers-api/swagger-ui/
# A numeric user, so that an orchestrator can tell without running it that it is not root
# (Kubernetes' runAsNonRoot).
USER 10001:10001
ENV APP_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080
EXPOSE 8080
# Ready = the database answers and the migrations are applied (/readyz). bash's /dev/tcp makes
# the request, so the image needs no HTTP client; the service answers HTTP/1.1 on PORT.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${PORT:-8080} && printf 'GET /readyz HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && IFS= read -r -t 2 status <&3 && [[ $status == 'HTTP/1.1 200 '* ]]"]
ENTRYPOINT ["customers-api"]
CMD ["serve"]
