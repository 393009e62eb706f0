# Where this machine's own apt configuration fetches Debian from (sourced by toolchain/setup.sh
# and docker/check_recipe.sh; no mirror is ever written into the repository).

# The Debian source files of this machine: deb822 *.sources and one-line *.list files.
apt_source_files() {
  local f
  for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
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
