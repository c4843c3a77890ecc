# The registry's container image. Builds with `docker build .`, and with
# `podman build --format docker .` (the OCI format has no HEALTHCHECK) or buildah.
# Configuration: mount a YAML file over /etc/registry/config.yml, or set REGISTRY_*
# variables; data lives in the /var/lib/registry volume. See docs/operations.md.

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/registry
WORKDIR /src
# Dependencies first, in a layer of their own that code changes do not invalidate.
COPY pyproject.toml ./
RUN /opt/registry/bin/python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' > requirements.txt \
    && /opt/registry/bin/pip install --no-cache-dir -r requirements.txt
COPY registry ./registry
COPY storage_backends ./storage_backends
RUN /opt/registry/bin/pip install --no-cache-dir --no-deps . \
    && /opt/registry/bin/pip uninstall --yes pip setuptools

FROM python:3.11-slim
RUN groupadd --system --gid 10001 registry \
    && useradd --system --uid 10001 --gid registry --no-create-home \
        --home-dir /var/lib/registry --shell /usr/sbin/nologin registry \
    && mkdir -p /var/lib/registry /etc/registry \
    && chown registry:registry /var/lib/registry
COPY --from=build /opt/registry /opt/registry
COPY deploy/config.yml /etc/registry/config.yml
ENV PATH=/opt/registry/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    REGISTRY_CONFIG_FILE=/etc/registry/config.yml
USER 10001:10001
WORKDIR /var/lib/registry
VOLUME ["/var/lib/registry"]
EXPOSE 5000
# `registry healthcheck` reads the same configuration as the server (port, TLS) and
# asks /health/ready, which checks the storage backend.
HEALTHCHECK --interval=30s --timeout=10s --start-period=20s --retries=3 \
    CMD ["registry", "healthcheck"]
ENTRYPOINT ["registry"]
CMD ["serve"]
