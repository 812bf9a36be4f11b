#!/bin/busybox sh
# /init of the kcrash lab's kdump initramfs (kcrash lab crash --via kdump). The same initramfs serves
# both kernels:
#  - first kernel: load the modules, mount the host's / read-only over 9p (tag hostfs), load the
#    capture kernel with Debian's kexec-tools (kexec -p, run chrooted in the host's tree), plant the
#    test module's work and trigger the crash kind;
#  - capture kernel (/proc/vmcore exists): mount the host's / and the writable output share (tag
#    out), run the collector chrooted in the host's tree on /proc/vmcore, power off.
# Paths on the host come from the command line: kcrash_kexec= (unpacked kexec-tools root),
# kcrash_vmlinuz=, kcrash_initrd=, kcrash_python= (the project's interpreter), kcrash_collect=
# (the collector's arguments before IN OUT, commas for spaces).
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t debugfs debugfs /sys/kernel/debug
mkdir -p /tmp /hostfs && mount -t tmpfs -o size=50% tmpfs /tmp

KIND=none
ALLOC=100
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        kcrash_kind=*) KIND="${arg#kcrash_kind=}" ;;
        kcrash_alloc=*) ALLOC="${arg#kcrash_alloc=}" ;;
        kcrash_kexec=*) KEXEC_ROOT="${arg#kcrash_kexec=}" ;;
        kcrash_vmlinuz=*) VMLINUZ="${arg#kcrash_vmlinuz=}" ;;
        kcrash_initrd=*) INITRD="${arg#kcrash_initrd=}" ;;
        kcrash_python=*) PYTHON="${arg#kcrash_python=}" ;;
        kcrash_collect=*) COLLECT="$(echo "${arg#kcrash_collect=}" | tr , ' ')" ;;
        kcrash_makedumpfile=*) MAKEDUMPFILE_ARGS="$(echo "${arg#kcrash_makedumpfile=}" | tr , ' ')" ;;
    esac
done

log() { echo "kcrash-kdump: $*" > /dev/kmsg; }

# modules/order lists the modules in dependency order (9p and virtio transport, fw_cfg, pvpanic)
for m in $(cat /modules/order); do
    insmod "/modules/$m.ko" 2>/dev/null || log "insmod $m failed"
done
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose hostfs /hostfs || log "mount hostfs failed"
mount -t proc proc /hostfs/proc || log "mount /hostfs/proc failed"
mount -t sysfs sysfs /hostfs/sys || log "mount /hostfs/sys failed"
mount -t devtmpfs devtmpfs /hostfs/dev || log "mount /hostfs/dev failed"

run_kcrash() {
    chroot /hostfs /usr/bin/env -i PATH=/usr/bin:/bin HOME=/tmp PYTHONDONTWRITEBYTECODE=1 "$PYTHON" -m kcrash.cli "$@"
}
if [ -e /proc/vmcore ] || [ "$KIND" = KCORE ]; then
    mount -t 9p -o trans=virtio,version=9p2000.L,rw out /hostfs/tmp || log "mount out failed"
fi
if [ "$KIND" = KCORE ]; then
    # kcrash on the running kernel's own /proc/kcore, beside what /proc says, for the host to compare
    insmod /modules/kcrash_test.ko alloc="$ALLOC" || log "insmod kcrash_test failed"
    for i in 1 2 3 4; do sleep 100000 & done
    for c in sys ps log mod; do run_kcrash $c /proc/kcore --json > /hostfs/tmp/kcore-$c.json 2> /hostfs/tmp/kcore-$c.err; done
    run_kcrash bt /proc/kcore 1 --json > /hostfs/tmp/kcore-bt.json 2> /hostfs/tmp/kcore-bt.err
    for p in /proc/[0-9]*; do echo "${p#/proc/} $(cat $p/comm)"; done > /hostfs/tmp/proc-comm.txt
    cat /proc/modules > /hostfs/tmp/proc-modules.txt
    uname -r > /hostfs/tmp/uname.txt
    dmesg > /hostfs/tmp/dmesg.txt
    echo done > /hostfs/tmp/kcore.status
    sync
    umount /hostfs/tmp
    poweroff -f
fi
if [ -e /proc/vmcore ]; then
    log "capture kernel up; collecting"
    START=$(cut -d' ' -f1 /proc/uptime)
    run_kcrash $COLLECT /proc/vmcore /tmp/vmcore.kcrash > /tmp/collect.out 2>&1
    RC=$?
    cp /tmp/collect.out /hostfs/tmp/collect.log 2>/dev/null
    # the same collection by makedumpfile (kdump-tools' default core collector), when the host has it
    if [ -x /hostfs/usr/bin/makedumpfile ]; then
        chroot /hostfs /usr/bin/makedumpfile $MAKEDUMPFILE_ARGS /proc/vmcore /tmp/vmcore.makedumpfile \
            > /hostfs/tmp/makedumpfile.log 2>&1
        log "makedumpfile rc=$?"
    fi
    END=$(cut -d' ' -f1 /proc/uptime)
    echo "$RC $START $END" > /hostfs/tmp/collect.status
    log "collected rc=$RC uptime $START..$END"
    sync
    umount /hostfs/tmp
    poweroff -f
fi

insmod /modules/kcrash_test.ko alloc="$ALLOC" || log "insmod kcrash_test failed"
APPEND="$(sed -e 's/crashkernel=[^ ]*//' -e 's/kcrash_kind=[^ ]*//' /proc/cmdline) irqpoll nr_cpus=1 reset_devices"
if KEXEC_OUT=$(chroot /hostfs /usr/bin/env -i LD_LIBRARY_PATH="$KEXEC_ROOT/usr/lib/x86_64-linux-gnu" \
        "$KEXEC_ROOT/sbin/kexec" -p "$VMLINUZ" --initrd="$INITRD" --append="$APPEND" 2>&1); then
    log "capture kernel loaded"
else
    log "kexec -p failed: $(echo "$KEXEC_OUT" | tail -3 | tr '\n' ' ')"
fi

for i in 1 2 3 4; do sleep 100000 & done
(while true; do sleep 1; done) &
# The QEMU guest's planted files and sockets (init.sh), for the oracles of `files`, `net` and `waitq`:
# a sleep holding /init (fd 3), a tmpfs file (fd 4), /dev/null (fd 5) and a pipe to another sleep;
# loopback up, a TCP listener on port 4322 and a connection to 127.0.0.1:4321.
echo kcrash-lab > /tmp/kcrash-open
sleep 100000 3</init 4>>/tmp/kcrash-open 5</dev/null | sleep 100000 &
ip link set lo up
sleep 100000 | nc -l -p 4321 > /dev/null &
sleep 100000 | nc -l -p 4322 > /dev/null &
sleep 1
sleep 100000 | nc 127.0.0.1 4321 &
sleep 1
echo 1 > /proc/sys/kernel/sysrq
sysctl() { echo "$2" > "/proc/sys/$(echo "$1" | tr . /)"; }
case "$KIND" in
    WARNING) sysctl kernel.panic_on_warn 1 ;;
    SOFTLOCKUP|SPINLOCKUP) sysctl kernel.softlockup_panic 1; sysctl kernel.watchdog_thresh 5 ;;
    HUNG_ABBA) sysctl kernel.hung_task_panic 1; sysctl kernel.hung_task_timeout_secs 10 ;;
esac
log "ready kind=$KIND"
case "$KIND" in
    none) while true; do sleep 1; done ;;
    SYSRQ) echo c > /proc/sysrq-trigger ;;
    *) echo "$KIND" > /sys/kernel/debug/kcrash_test/DIRECT ;;
esac
log "trigger for $KIND returned; waiting"
while true; do sleep 1; done
