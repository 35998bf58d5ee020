#!/usr/bin/env bash
# Adds <codename>-backports next to the machine's own Debian source (Suricata 7 lives there for bookworm).
# The archive address is read from the existing apt configuration, never written here. Root only.
set -euo pipefail
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
[ -n "$codename" ] || { echo "enable-backports: not a Debian release with a codename" >&2; exit 1; }
target=/etc/apt/sources.list.d/ictwatch-backports.sources
[ -f "$target" ] && exit 0
uri=""
if [ -f /etc/apt/sources.list.d/debian.sources ]; then  # deb822: the stanza whose suites include the codename
  uri=$(awk -v c="$codename" 'BEGIN{RS=""} $0 ~ "Suites:[^\n]*(^| )" c "( |$)" && $0 !~ /security/ {
          if (match($0, /URIs: *[^ \n]+/)) { u=substr($0, RSTART, RLENGTH); sub(/URIs: */, "", u); print u; exit } }' \
        /etc/apt/sources.list.d/debian.sources)
fi
if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then  # one-line format
  uri=$(awk -v c="$codename" '$1=="deb" && $3==c && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list)
fi
[ -n "$uri" ] || { echo "enable-backports: no Debian source for $codename found in apt's configuration" >&2; exit 1; }
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
cat > "$target" <<SRC
Types: deb
URIs: $uri
Suites: $codename-backports
Components: main
Signed-By: $keyring
SRC
echo "enable-backports: added $codename-backports from $uri"
