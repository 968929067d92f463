# syntax=docker/dockerfile:1
# Multi-stage build: compile with the full Rust image, run on a slim Debian with only the binary.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /app
# sqlx checks its queries at compile time; with SQLX_OFFLINE it reads them from .sqlx/ instead of
# asking a database, so the image builds without one.
ENV SQLX_OFFLINE=true
# Dependencies first, so that a change to the code alone reuses the cached dependency layer.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src
COPY .sqlx ./.sqlx
COPY migrations ./migrations
COPY config ./config
COPY src ./src
# The stub build above left newer timestamps on its artefacts than the real sources may have.
RUN touch src/main.rs src/lib.rs && cargo build --release --locked

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin app
WORKDIR /app
COPY --from=build /app/target/release/customers-api /usr/local/bin/customers-api
# Migrations are compiled into the binary; the files are shipped too for `sqlx migrate run`.
COPY --from=build /app/migrations ./migrations
COPY --from=build /app/config ./config
USER app
ENV APP_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8080/readyz || exit 1
ENTRYPOINT ["customers-api"]
CMD ["serve"]
