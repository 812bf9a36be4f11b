#!/bin/busybox sh
# /init of the kcrash lab's busybox initramfs. Reads kcrash_kind=KIND from the kernel command
# line, loads the modules, plants background work, then triggers the crash kind (or idles).
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t debugfs debugfs /sys/kernel/debug
mkdir -p /tmp && mount -t tmpfs -o size=90% tmpfs /tmp

KIND=none
ALLOC=100
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        kcrash_kind=*) KIND="${arg#kcrash_kind=}" ;;
        kcrash_alloc=*) ALLOC="${arg#kcrash_alloc=}" ;;
    esac
done

# Through the kernel log only: printk serializes console output, while a direct write to the console
# could interleave with an oops being printed on another CPU.
log() { echo "kcrash-lab: $*" > /dev/kmsg; }

for m in qemu_fw_cfg pvpanic pvpanic-mmio; do
    insmod "/modules/$m.ko" || log "insmod $m failed"
done
insmod /modules/kcrash_test.ko alloc="$ALLOC" || log "insmod kcrash_test failed"

# Background work so the task list is not trivial.
for i in 1 2 3 4; do sleep 100000 & done
(while true; do sleep 1; done) &

# Known open files for `files`: a sleep holding /init (fd 3, read), a tmpfs file (fd 4, write),
# /dev/null (fd 5) and a pipe to another sleep (its stdout).
echo kcrash-lab > /tmp/kcrash-open
sleep 100000 3</init 4>>/tmp/kcrash-open 5</dev/null | sleep 100000 &
# Known sockets for `net`: loopback up, a TCP listener on port 4322 that stays in LISTEN, and a
# connection to 127.0.0.1:4321 (busybox's nc binds every address and, once it accepts, closes its
# listening socket).
ip link set lo up
# (stdin from a pipe that never ends: on EOF of a background job's /dev/null stdin nc closes the connection)
sleep 100000 | nc -l -p 4321 > /dev/null &
sleep 100000 | nc -l -p 4322 > /dev/null &
sleep 1
sleep 100000 | nc 127.0.0.1 4321 &
sleep 1  # the handshake completes before the crash is triggered

sysctl() { echo "$2" > "/proc/sys/$(echo "$1" | tr . /)"; }
echo 1 > /proc/sys/kernel/sysrq

case "$KIND" in
    WARNING) sysctl kernel.panic_on_warn 1 ;;
    SOFTLOCKUP|SPINLOCKUP) sysctl kernel.softlockup_panic 1; sysctl kernel.watchdog_thresh 5 ;;
    HUNG_ABBA) sysctl kernel.hung_task_panic 1; sysctl kernel.hung_task_timeout_secs 10 ;;
    OOM) sysctl vm.panic_on_oom 1 ;;
    NMI) sysctl kernel.unknown_nmi_panic 1 ;;
esac

log "ready kind=$KIND"
case "$KIND" in
    none) while true; do sleep 1; done ;;
    SYSRQ) echo c > /proc/sysrq-trigger ;;
    INITEXIT) exit 3 ;;
    OOM) i=0; while true; do i=$((i+1)); dd if=/dev/zero of=/tmp/fill$i bs=1M count=16 2>/dev/null; done ;;
    NMI) while true; do sleep 1; done ;;
    *) echo "$KIND" > /sys/kernel/debug/kcrash_test/DIRECT ;;
esac
log "trigger for $KIND returned; waiting"
while true; do sleep 1; done
