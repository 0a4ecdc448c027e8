#!/bin/sh
# A tiny HTTP server for the quick start: answers every request with $GREETING.
while true; do
  printf 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %s\r\nConnection: close\r\n\r\n%s' \
    "${#GREETING}" "$GREETING" | nc -l -p "${PORT:-3000}" >/dev/null
done
