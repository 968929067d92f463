# A local stand-in for the official NATS image (`nats:2.10`), for machines that cannot reach a
# container registry; scripts/compose-smoke builds it under that name when the name is missing.
# It is Debian's nats-server package (2.9.x in bookworm; JetStream included) laid out like the
# official image where the compose stack looks: the entrypoint is the server, the arguments
# are its flags, it listens on 4222 (clients) and 8222 (monitoring) and runs as root with its
# JetStream store on a volume, so the compose file needs nothing special to use it.
# Built with --network host so that apt reaches the mirror through the host's network.
FROM debian:bookworm-slim
RUN set -eux; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nats-server; \
    rm -rf /var/lib/apt/lists/*; \
    mkdir -p /etc/nats /data; \
    printf 'port: 4222\nmonitor_port: 8222\n' >/etc/nats/nats-server.conf; \
    nats-server --version
LABEL org.opencontainers.image.description="Stand-in for nats:2.10 built from Debian's nats-server (scripts/compose.d/nats.Dockerfile)"
EXPOSE 4222 8222
ENTRYPOINT ["nats-server"]
CMD ["--config", "/etc/nats/nats-server.conf"]
