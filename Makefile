# The two commands: `make run` and `make test`. Both provision their own
# Postgres (deploy/dev/pg.sh) when DATABASE_URL is unset.
SHELL := /bin/bash
GO ?= go

.PHONY: run test build vet fmt clean fuzz demo bench bench-prune bench-send bench-console soak pgo

## run: the gateway with development keys, on a local Postgres it starts
run:
	@bash deploy/dev/run.sh

## test: every test (go test -race), against a Postgres it starts and stops
test:
	@bash deploy/dev/test.sh

## demo: the gateway end to end: sends the samples, a resend and a forgery, prints the state, stops
demo:
	@bash deploy/dev/demo.sh

## bench: gateway throughput and latency against the naive design, and the webhooks' cost and drain (own Postgres; about three minutes; BENCH_WEBHOOKS=0 without the webhooks, =only them alone)
bench:
	@bash deploy/dev/bench.sh

## bench-prune: intake while a million old rows are pruned, against none; the prune alone; its plans; partitions (own Postgres; about 15 minutes; BENCH_PRUNE_PARTS, BENCH_PRUNE_ROUNDS)
bench-prune:
	@bash deploy/dev/bench-prune.sh

## bench-send: bulk template messages against the OpenAPI simulator: 20,000 sends drained at 1,000/s or more, and 50/s within 5% across two replicas (own Postgres; a few minutes; BENCH_SEND_PARTS="drain rate simlimit")
bench-send:
	@bash deploy/dev/bench-send.sh
## bench-console: every ops console page timed on a million notifications (own Postgres; a few minutes; BENCH_CONSOLE_FILL=0 reuses the filled database)
bench-console:
	@bash deploy/dev/bench-console.sh

## soak: failure scenarios; SCENARIO=kill9|pgrestart|replicas|steady|webhooks (default all; steady lasts SOAK_DURATION, 10m; webhooks 2-4m)
soak:
	@bash deploy/dev/soak.sh $(or $(SCENARIO),all)

## pgo: refresh cmd/gateway/default.pgo, the profile go build optimises the gateway with (a minute)
pgo:
	@bash deploy/dev/pgo.sh

## build: the binaries into bin/
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/ ./cmd/...

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l cmd internal migrations)" || (gofmt -l cmd internal migrations; exit 1)

fmt:
	gofmt -w cmd internal migrations

## clean: stop the dev databases and remove .dev/ and bin/
clean:
	-@bash deploy/dev/pg.sh stop .dev/pg >/dev/null 2>&1
	-@bash deploy/dev/pg.sh stop .dev/pg-test >/dev/null 2>&1
	-@bash deploy/dev/pg.sh stop .dev/pg-bench >/dev/null 2>&1
	-@bash deploy/dev/pg.sh stop .dev/pg-bench-send >/dev/null 2>&1
	-@bash deploy/dev/pg.sh stop .dev/pg-soak >/dev/null 2>&1
	-@bash deploy/dev/pg.sh stop .dev/pg-console >/dev/null 2>&1
	rm -rf .dev bin

## fuzz: every fuzz target for FUZZTIME each (default 5m)
fuzz:
	@bash deploy/dev/fuzz.sh $${FUZZTIME:-5m}
