#!/bin/sh
# The quick-start web server: answers every request with $GREETING, on the port Dray hands it.
mkdir -p /tmp/www
echo "${GREETING:-hello} from Dray" > /tmp/www/index.html
exec httpd -f -p "${PORT:-3000}" -h /tmp/www
