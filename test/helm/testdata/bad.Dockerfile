# A Dockerfile that breaks every rule dockerfile-lint enforces; the tests expect each finding.
from golang AS Build
WORKDIR /src
COPY . .
RUN GOOS=linux go build -ldflags "-X main.Version=dev" -o /out/canaryd ./cmd/canaryd

FROM debian:latest
RUN apt-get update
COPY --from=missing /out/canaryd /canaryd
USER nonroot
ENTRYPOINT /canaryd run
