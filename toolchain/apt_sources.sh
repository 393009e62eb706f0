# Where this machine's own apt configuration fetches Debian from (sourced by toolchain/setup.sh
# and docker/check_recipe.sh; no mirror is ever written into the repository).

# The Debian source files of this machine: deb822 *.sources and one-line *.list files
# (under APT_ETC, default /etc/apt; the toolchain tests point it at their own).
apt_source_files() {
  local f etc=${APT_ETC:-/etc/apt}
  for f in "$etc"/sources.list.d/*.sources "$etc"/sources.list "$etc"/sources.list.d/*.list; do
    if [[ -f $f ]]; then echo "$f"; fi
  done
}

# The first Debian mirror (a URI ending in /debian) that those files name.
apt_mirror() {
  local f
  apt_source_files | while read -r f; do
    awk '/^URIs:/ && $2 ~ /debian\/?$/ {print $2; exit}
         /^deb / {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\// && $i ~ /debian\/?$/) {print $i; exit}}' "$f"
  done | head -n 1
}

# Where old releases may still be found once a release has left the mirror, derived from the
# mirror, never named here: the archive host beside the mirror's own (first label "archive",
# the distribution's naming for its archive of old releases), then any snapshot URIs that
# those files give in comments. apt checks every candidate's signature with the keyring.
apt_archives() {
  local mirror
  mirror=$(apt_mirror)
  if [[ $mirror =~ ^([a-z]+://)[^./]+(\.[^/]+\.[^/]+)(/.*)$ ]]; then
    echo "${BASH_REMATCH[1]}archive${BASH_REMATCH[2]}${BASH_REMATCH[3]}"
  fi
  apt_source_files | xargs -r sed -nE 's|^#[[:space:]]*([a-z]+://[^[:space:]]+/debian(/[0-9TZ]+)?/?)[[:space:]]*$|\1|p' \
    | sort -u
}
