# Multi-stage build of every backend binary (candles-connector, candles-service, exchange-sim,
# candles-tui) into one small, non-root runtime image. Used by docker-compose.yml.
FROM rust:1.95-bookworm AS build
WORKDIR /src
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
      -p candles-connector -p candles-service -p exchange-sim -p candles-tui \
 && mkdir -p /out \
 && cp target/release/candles-connector target/release/candles-service \
       target/release/exchange-sim target/release/candles-tui /out/

FROM debian:bookworm-slim AS runtime
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home candles
COPY --from=build /out/ /usr/local/bin/
USER candles
ENV RUST_LOG=info
EXPOSE 8080 9100
CMD ["candles-service", "--help"]
