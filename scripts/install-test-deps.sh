#!/usr/bin/env bash
# Installs the Debian packages the test suite and benchmarks drive for real: tshark, Squid, squidGuard,
# e2guardian, GoAccess, SARG, Prometheus (promtool), Alertmanager (amtool), 7-Zip, Chromium, tcpdump,
# nftables, conntrack, tcpreplay, and Suricata 7 (from <codename>-backports, enabled from the machine's own Debian
# source by enable-backports.sh). Services the packages would start are not started (policy-rc.d).
# Runs apt only as root and only for what is missing; otherwise says what the tests will skip.
set -euo pipefail
who=${DEV_SAY:-install-test-deps}  # ./dev sets DEV_SAY=dev so that its phase lines share one name
packages=(tshark suricata goaccess squid squidguard e2guardian openssl prometheus prometheus-alertmanager p7zip-full chromium sarg tcpdump nftables conntrack tcpreplay)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "$who: not root; tests that need ${missing[*]} will be skipped" >&2
  exit 0
fi
echo "$who: installing the Debian packages the tests need with apt (${missing[*]})…" >&2
export DEBIAN_FRONTEND=noninteractive
if [ ! -e /usr/sbin/policy-rc.d ]; then  # the tests start e2guardian and Squid themselves, on loopback
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
if [[ " ${missing[*]} " == *" suricata "* ]]; then
  bash "$(dirname "$0")/enable-backports.sh"
fi
apt-get update -qq
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
for p in "${missing[@]}"; do
  if [ "$p" = suricata ] && [ "$codename" = bookworm ]; then
    apt-get install -y -qq --no-install-recommends -t bookworm-backports suricata >/dev/null
  else
    apt-get install -y -qq --no-install-recommends "$p" >/dev/null
  fi
done
