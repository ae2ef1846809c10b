#!/bin/sh
# image-slim.sh LIB_PACKAGES: run by deploy/Containerfile's rootfs stage, on
# Debian 12 slim, as root.  Installs the packages LIB_PACKAGES names (those
# owning the libraries `ferry` loads, from deploy/lib-packages.sh) and the
# programs the agent runs, then takes out what the agent never uses.
# docs/deploy-image.md explains each choice and the sizes.
set -eu
libs=$1
export DEBIAN_FRONTEND=noninteractive

# Never unpacked: documentation, manuals, translations (the copyright files
# stay); xfs_scrub_all, a python3 script, and xfs_scrub (see xfsprogs below);
# the libraries of packages we need that nothing here loads: ICU's i18n, io
# and test parts (libxml2 loads libicuuc and its data only), gRPC's build
# without TLS and its code generator support; glibc's iconv modules (8 MB:
# conversions from legacy character sets, which nothing here asks for: the
# image sets no locale, XML from S3 is UTF-8, and iconv_open of a missing
# module fails cleanly); tzdata's "right/" zones (leap-second clocks).
cat >/etc/dpkg/dpkg.cfg.d/ferry-image <<'EOF'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
path-exclude=/usr/share/lintian/*
path-exclude=/usr/sbin/xfs_scrub*
path-exclude=/usr/lib/systemd/*
path-exclude=/lib/systemd/*
path-exclude=/usr/lib/*/libicui18n.so*
path-exclude=/usr/lib/*/libicuio.so*
path-exclude=/usr/lib/*/libicutest.so*
path-exclude=/usr/lib/*/libicutu.so*
path-exclude=/usr/lib/*/libgrpc_unsecure.so*
path-exclude=/usr/lib/*/libgrpc_plugin_support.so*
path-exclude=/usr/lib/*/gconv/*.so
path-exclude=/usr/share/zoneinfo/right/*
EOF

apt-get update -q
# The base may be older than the mirror (build-image.sh keeps the one it made).
apt-get upgrade -y -q
# The base's packages that the exclusions above trim, unpacked again under them.
apt-get install -y -q --reinstall libc6 tzdata
# The libraries `ferry` loads; mkfs.ext4 (e2fsprogs); the CA certificates
# libcurl verifies S3 endpoints with (its default bundle,
# /etc/ssl/certs/ca-certificates.crt: data, not a library, so ldd cannot
# name it; libcurl4 only recommends it).
# shellcheck disable=SC2046
apt-get install -y -q --no-install-recommends $(cat "$libs") e2fsprogs ca-certificates

# mkfs.xfs (xfsprogs).  xfsprogs depends on python3 only for xfs_scrub_all,
# a script the agent never runs (and excluded above): python3 and its
# standard library would be ~20 MB of the image.  Its other dependencies are
# installed as usual; xfsprogs itself by dpkg, told to ignore that one.
xfs_deps=$(apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces \
	--no-enhances xfsprogs | awk '$1 == "Depends:" && $2 !~ /python3/ { print $2 }')
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $xfs_deps
cd /tmp
apt-get download -q xfsprogs
dpkg --ignore-depends=python3:any,python3 -i /tmp/xfsprogs_*.deb
rm -f /tmp/xfsprogs_*.deb

# What the agent never uses, purged (dpkg keeps its record of what stays
# exact).  Nothing installs or changes packages in a running node plugin:
#   the package manager:   apt libapt-pkg6.0 gpgv debian-archive-keyring
#   users and logins:      adduser passwd login libpam-modules libpam-modules-bin
#                          libpam-runtime libsemanage2 libsemanage-common
#                          libsepol2 (the agent runs as root, nobody logs in)
#   init and terminals:    sysvinit-utils init-system-helpers ncurses-bin
#   gRPC's code generator: libprotobuf32 libprotoc32 (libgrpc29 depends on them
#                          for libgrpc_plugin_support, which nothing here loads)
#   SASL's sasldb plugin:  libsasl2-modules-db libdb5.3 (dlopened by SASL
#                          authentication, which ferry's curl never does)
# and last, as the maintainer scripts of the first group run them:
#   perl-base debconf
# Each of these is Essential or depended upon by something that stays, hence
# the forces; the check below and the image test prove that what stays loads.
purge1="apt libapt-pkg6.0 gpgv debian-archive-keyring
	adduser passwd login libpam-modules libpam-modules-bin libpam-runtime libsemanage2
	libsemanage-common libsepol2
	sysvinit-utils init-system-helpers ncurses-bin
	libprotobuf32 libprotoc32 libsasl2-modules-db libdb5.3"
purge2="perl-base debconf"
# Clean up what apt leaves behind first (apt is about to go).
apt-get clean
for group in "$purge1" "$purge2"; do
	present=
	for p in $group; do
		if dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed'; then
			present="$present $p"
		fi
	done
	# shellcheck disable=SC2086
	dpkg --purge --force-remove-essential --force-depends $present
done

# What apt, debconf and dpkg leave behind.
rm -rf /etc/apt /var/lib/apt /var/cache/apt /var/log/apt /var/cache/debconf /var/log/dpkg.log \
	/var/log/alternatives.log /var/lib/dpkg/*-old /var/cache/ldconfig/aux-cache

# Every program and library the image keeps must load: ferry, mkfs.ext4 and
# mkfs.xfs above all, but also the shell tools left for hooks and debugging.
find / -xdev -type f \( -perm -u+x -o -name '*.so*' \) 2>/dev/null | while read -r f; do
	[ "$(head -c 4 "$f" | od -An -c | tr -d ' ')" = '177ELF' ] || continue
	if ldd "$f" 2>/dev/null | grep -q 'not found'; then
		echo "image-slim: $f: $(ldd "$f" | grep 'not found' | tr -s ' \t\n' ' ')"
	fi
done >/tmp/unloadable
if [ -s /tmp/unloadable ]; then
	cat /tmp/unloadable >&2
	exit 1
fi
rm -f /tmp/unloadable
/usr/local/bin/ferry --version
