# rsdbt in a container: the release binary on a small Debian runtime, with the example project.
#   docker build -t rsdbt .
#   docker run --rm rsdbt build                              # the example pipeline
#   docker run --rm -v "$PWD:/project" rsdbt build           # your project (its profiles.yml)
# The build stage runs the README's install step (`cargo install --path . --locked`).

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Manifests first, so a source change does not download the dependencies again.
COPY Cargo.toml Cargo.lock ./
# build.rs: the executable's link arguments (position-dependent, identical code folded, no
# unwind tables), which the README's binary size and start-up memory depend on.
COPY build.rs ./
COPY src ./src
RUN cargo install --path . --locked --root /out

FROM debian:bookworm-slim
# CA certificates for S3, PostgreSQL over TLS and OTLP endpoints; nothing else is needed.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates=20230311* \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 rsdbt
COPY --from=build /out/bin/rsdbt /usr/local/bin/rsdbt
WORKDIR /project
COPY --chown=rsdbt project.yml profiles.yml ./
COPY --chown=rsdbt models ./models
COPY --chown=rsdbt macros ./macros
COPY --chown=rsdbt seeds ./seeds
COPY --chown=rsdbt snapshots ./snapshots
COPY --chown=rsdbt data-tests ./data-tests
USER 10001
ENTRYPOINT ["rsdbt"]
CMD ["build"]
