# Multi-stage build of a static binary on musl, run from an empty image as a
# non-root user. Build where a Docker engine exists:
#   docker build -t persistence-webhook:0.1.0 .
FROM rust:1-alpine AS build
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY core ./core
COPY src ./src
COPY examples ./examples
COPY benches ./benches
RUN cargo build --release --locked --bin persistence-webhook \
 && strip target/release/persistence-webhook

FROM scratch
COPY --from=build /src/target/release/persistence-webhook /persistence-webhook
USER 65532:65532
EXPOSE 8443 9090
ENTRYPOINT ["/persistence-webhook"]
CMD ["serve", "--help"]
