#!/usr/bin/env bash
# Install the programs Roost's end-to-end tests drive, on Debian 12.
#
#   sudo ./scripts/install-test-deps.sh
#
# Clients: swaks (with Net::SSLeay for --tls), curl, fetchmail, isync
# (mbsync), pflogsumm. Reference servers the tests compare against or
# talk to on loopback: postfix (smtp-sink, a second MTA), dovecot,
# unbound (a test DNS resolver). None of them is left running: the tests
# start their own copies on free loopback ports.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "install-test-deps: run as root (sudo $0)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# postfix asks how to configure itself; "No configuration" writes no
# main.cf and starts nothing on port 25
echo "postfix postfix/main_mailer_type select No configuration" \
    | debconf-set-selections

# keep the packages' own daemons from starting at install (Debian's
# invoke-rc.d asks /usr/sbin/policy-rc.d; 101 means "not now")
made_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
fi
cleanup() {
    if [ "$made_policy" = 1 ]; then
        rm -f /usr/sbin/policy-rc.d
    fi
}
trap cleanup EXIT

PACKAGES=(
    swaks libnet-ssleay-perl libauthen-sasl-perl
    curl ca-certificates
    fetchmail
    isync
    postfix
    dovecot-imapd dovecot-pop3d
    unbound
    pflogsumm
)

apt-get update
apt-get install -y --no-install-recommends "${PACKAGES[@]}"

# if a daemon was running anyway (an older install), stop it: the tests
# must own every port they use
if [ -x /usr/sbin/postfix ] && /usr/sbin/postfix status >/dev/null 2>&1; then
    /usr/sbin/postfix stop || true
fi
for service in dovecot unbound; do
    if command -v service >/dev/null && service "$service" status >/dev/null 2>&1
    then
        service "$service" stop || true
    fi
done

# fail here, not in the middle of the tests, when something is missing
missing=0
for program in swaks curl fetchmail mbsync pflogsumm \
    /usr/sbin/postfix /usr/sbin/smtp-sink /usr/sbin/dovecot /usr/sbin/unbound
do
    if ! command -v "$program" >/dev/null; then
        echo "install-test-deps: $program is missing" >&2
        missing=1
    fi
done
perl -MNet::SSLeay -e 1 || { echo "install-test-deps: Net::SSLeay missing" >&2; missing=1; }
exit "$missing"
