#!/bin/bash
# Build a bootable Debian disk for the VM lab without network access from the guest:
# debootstrap on the host (packages come from the mirror at build time), configure the tree
# (SSH key, network from the kernel command line, host keys made at first boot), then turn
# the tree into an ext4 filesystem image (mkfs.ext4 -d: no loop devices, no mounts) and a
# qcow2. The kernel and initrd are copied beside the disk: the VMs boot them directly
# (qemu -kernel/-initrd), so the disk needs no partition table and no bootloader.
#
# usage: build-debootstrap.sh OUT_PREFIX SUITE MIRROR PACKAGES(comma) SIZE PUBKEY_FILE
# writes OUT_PREFIX.qcow2, OUT_PREFIX.vmlinuz, OUT_PREFIX.initrd (each renamed into place
# only when complete, so an interrupted build leaves nothing that looks finished).
set -euo pipefail

if [ "$#" -ne 6 ]; then
    echo "usage: $0 OUT_PREFIX SUITE MIRROR PACKAGES SIZE PUBKEY_FILE" >&2
    exit 2
fi
out=$1 suite=$2 mirror=$3 packages=$4 size=$5 pubkey=$6

for tool in debootstrap mkfs.ext4 qemu-img; do
    command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install debootstrap e2fsprogs qemu-utils" >&2; exit 2; }
done
[ -s "$pubkey" ] || { echo "SSH public key $pubkey is missing or empty" >&2; exit 2; }

work=$(mktemp -d /var/tmp/kmesh-lab-rootfs.XXXXXX)
cleanup() {
    # debootstrap may leave proc/sys mounted in the tree when it fails half way.
    for m in proc sys dev/pts dev; do
        mountpoint -q "$work/root/$m" 2>/dev/null && umount -l "$work/root/$m" || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

root=$work/root
debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$mirror"

# Root filesystem is the whole virtio disk (no partition table).
printf '/dev/vda / ext4 defaults,errors=remount-ro 0 1\n' >"$root/etc/fstab"
echo kmvm >"$root/etc/hostname"
printf '127.0.0.1 localhost\n' >"$root/etc/hosts"
# The guest has no route anywhere but its lab bridge: no mirror to reach later.
printf '# offline lab image: packages were installed at build time\n' >"$root/etc/apt/sources.list"

# Login: root with the lab's key only (no password).
install -d -m 0700 "$root/root/.ssh"
install -m 0600 "$pubkey" "$root/root/.ssh/authorized_keys"
chroot "$root" passwd -l root >/dev/null
install -d "$root/etc/ssh/sshd_config.d"
cat >"$root/etc/ssh/sshd_config.d/kmesh-lab.conf" <<'EOF'
PermitRootLogin prohibit-password
PasswordAuthentication no
UseDNS no
EOF
# Every VM of one base image must not share host keys: made at first boot instead.
rm -f "$root"/etc/ssh/ssh_host_*

# Static network from the kernel command line (kmlab.ip=A/P kmlab.hostname=N), so one base
# image serves every VM; the VM cluster role puts a different address on each command line.
cat >"$root/usr/local/sbin/kmlab-net" <<'EOF'
#!/bin/sh
# Configure eth0 and the hostname from /proc/cmdline (kmlab.ip=, kmlab.hostname=).
set -eu
ip_cidr="" name=""
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        kmlab.ip=*) ip_cidr=${arg#kmlab.ip=} ;;
        kmlab.hostname=*) name=${arg#kmlab.hostname=} ;;
    esac
done
[ -n "$name" ] && hostname "$name" && echo "$name" >/etc/hostname && printf '127.0.0.1 localhost\n127.0.1.1 %s\n' "$name" >/etc/hosts
ip link set lo up
if [ -n "$ip_cidr" ]; then
    ip link set eth0 up
    ip addr replace "$ip_cidr" dev eth0
fi
EOF
chmod 0755 "$root/usr/local/sbin/kmlab-net"
cat >"$root/etc/systemd/system/kmlab-net.service" <<'EOF'
[Unit]
Description=kmesh-lab static network from the kernel command line
DefaultDependencies=no
Wants=network.target
Before=network.target ssh.service
After=systemd-udev-settle.service sys-subsystem-net-devices-eth0.device
Requires=sys-subsystem-net-devices-eth0.device

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/kmlab-net

[Install]
WantedBy=multi-user.target
EOF
cat >"$root/etc/systemd/system/kmlab-hostkeys.service" <<'EOF'
[Unit]
Description=kmesh-lab SSH host keys made on first boot
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
EOF
chroot "$root" systemctl enable kmlab-net.service kmlab-hostkeys.service ssh.service >/dev/null 2>&1
# Nothing to wait for at boot on an offline VM.
chroot "$root" systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer >/dev/null 2>&1 || true

# Keep the image small: package caches and lists are not needed offline.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*

kernel=$(ls "$root"/boot/vmlinuz-* | sort -V | tail -n 1)
initrd=$(ls "$root"/boot/initrd.img-* | sort -V | tail -n 1)
cp "$kernel" "$work/vmlinuz"
cp "$initrd" "$work/initrd"

mkfs.ext4 -q -F -L kmlab-root -d "$root" "$work/disk.raw" "$size"
qemu-img convert -O qcow2 "$work/disk.raw" "$work/disk.qcow2"

mv "$work/vmlinuz" "$out.vmlinuz.tmp" && mv "$out.vmlinuz.tmp" "$out.vmlinuz"
mv "$work/initrd" "$out.initrd.tmp" && mv "$out.initrd.tmp" "$out.initrd"
# The disk last: its presence is what says the build is complete.
mv "$work/disk.qcow2" "$out.qcow2.tmp" && mv "$out.qcow2.tmp" "$out.qcow2"
echo "built $out.qcow2 (kernel $(basename "$kernel"))"
