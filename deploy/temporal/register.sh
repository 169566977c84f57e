#!/bin/sh
# One-shot after the server is healthy: the namespace and changeloop's custom search attributes (docs/architecture.md, "Contract").
# Idempotent: what exists already is left as it is, so `docker compose up` can run it on every start.
set -eu
: "${TEMPORAL_ADDRESS:=temporal:7233}" "${NAMESPACE:=default}" "${RETENTION:=30d}"
: "${CHANGELOOP_SEARCH_ATTRIBUTES:?name=Type pairs, e.g. ChangeNumber=Keyword}"
export TEMPORAL_ADDRESS

until temporal operator cluster health >/dev/null 2>&1; do echo "waiting for Temporal at $TEMPORAL_ADDRESS"; sleep 2; done

temporal operator namespace describe --namespace "$NAMESPACE" >/dev/null 2>&1 \
  || temporal operator namespace create --namespace "$NAMESPACE" --retention "$RETENTION"

existing=$(temporal operator search-attribute list --namespace "$NAMESPACE")
for pair in $CHANGELOOP_SEARCH_ATTRIBUTES; do
  name=${pair%%=*}
  type=${pair#*=}
  if printf '%s\n' "$existing" | grep -qw "$name"; then
    echo "search attribute $name exists"
  else
    temporal operator search-attribute create --namespace "$NAMESPACE" --name "$name" --type "$type"
  fi
done
echo "namespace $NAMESPACE and search attributes ready"
