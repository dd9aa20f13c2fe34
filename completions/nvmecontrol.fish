# fish completion for nvmecontrol(8)
#
# Device names come from sysfs and the runtime directory, subsystem NQNs
# from the cache that `nvmecontrol discover` writes: TAB only reads files
# and never starts Python.
# tests/cli/test_docs_in_step.py checks the options against the CLI.

set -l commands discover connect connect-all disconnect disconnect-all reconnect devlist identify logpage resv hostnqn gen-dhchap-key check-dhchap-key

# The runtime directory, as nvmecontrol/backends/runtime.py chooses it.
function __nvmecontrol_runtime_dir
    if set -q NVMECONTROL_RUNTIME_DIR[1]; and test -n "$NVMECONTROL_RUNTIME_DIR"
        echo $NVMECONTROL_RUNTIME_DIR
        return
    end
    set -l uid (command id -u)
    if test "$uid" = 0
        echo /run/nvmecontrol
    else if set -q XDG_RUNTIME_DIR[1]; and test -n "$XDG_RUNTIME_DIR"
        echo $XDG_RUNTIME_DIR/nvmecontrol
    else
        echo /tmp/nvmecontrol-$uid
    end
end

# Kernel controllers and namespaces, userspace sessions and their namespaces.
function __nvmecontrol_devices
    set -l sys /sys
    if set -q NVMECONTROL_SYSFS_ROOT[1]; and test -n "$NVMECONTROL_SYSFS_ROOT"
        set sys $NVMECONTROL_SYSFS_ROOT
    end
    # `set` and `for` accept globs that match nothing; commands do not.
    set -l found
    for d in $sys/class/nvme/nvme*
        set -l n (string replace -r '.*/' '' -- $d)
        string match -qr '^nvme[0-9]+$' -- $n; or continue
        set -l nss $d/$n"n"*
        set -a found $n (string replace -r '.*/' '' -- $nss)
    end
    set -l heads $sys/class/nvme-subsystem/*/nvme*
    set -a found (string replace -r '.*/' '' -- $heads)
    string match -r '^nvme[0-9]+(n[0-9]+)?$' -- $found
    # FreeBSD: no sysfs, the controllers and namespaces are in /dev.
    if not test -d $sys/class/nvme
        set -l nodes /dev/nvme*
        string replace -r '.*/' '' -- $nodes | string match -r '^nvme[0-9]+(ns[0-9]+)?$'
    end
    for d in (__nvmecontrol_runtime_dir)/nvmeu*
        set -l n (string replace -r '.*/' '' -- $d)
        string match -qr '^nvmeu[0-9]+$' -- $n; and test -d $d; or continue
        echo $n
        test -r $d/namespaces; or continue
        for nsid in (string match -r '^[0-9]+$' <$d/namespaces)
            echo $n"ns"$nsid
        end
    end
end

# The options of subcommand $argv[1] that take a value.
function __nvmecontrol_value_opts
    set -l fmt -o --format --output-format
    set -l remote -q --hostnqn -I --hostid --timeout $fmt
    set -l conn -i --nr-io-queues -k --keep-alive-tmo -l --ctrl-loss-tmo -r --reconnect-delay \
        -Q --queue-size -t --transport $remote
    set -l auth --dhchap-secret --dhchap-ctrl-secret
    switch $argv[1]
        case discover
            string join \n -- -t --transport $remote $auth
        case connect
            string join \n -- $conn -c --cntlid --backend --nbd-listen -J --config $auth
        case connect-all
            string join \n -- $conn -c --cntlid --backend --nbd-listen -J --config $auth
        case disconnect
            string join \n -- -n --nqn -d --device $fmt
        case reconnect
            string join \n -- $conn
        case identify
            string join \n -- $remote -n --nsid $auth
        case logpage
            string join \n -- $remote -n --nsid -p --page -v --vendor -f --lsp -i --lsi $auth
        case resv
            string join \n -- $remote -n --nsid -c --crkey -k --nrkey -p --prkey --cptpl \
                -t --rtype -a --racqa --rrela -r --rrega $auth
        case hostnqn
            string join \n -- -q --hostnqn -I --hostid $fmt
        case gen-dhchap-key
            string join \n -- -s --secret -l --key-length -n --nqn -m --hmac $fmt
        case check-dhchap-key
            string join \n -- -k --key $fmt
        case '*'
            string join \n -- $fmt
    end
end

# The words before the cursor after the subcommand that are neither
# options nor option values.
function __nvmecontrol_positionals
    set -l tokens (commandline -opc)
    set -e tokens[1]
    set -l cmd
    set -l value_opts
    set -l skip 0
    for t in $tokens
        if test $skip = 1
            set skip 0
        else if string match -q -- '-*' $t
            if not string match -q -- '*=*' $t; and contains -- $t $value_opts
                set skip 1
            end
        else if test -z "$cmd"
            set cmd $t
            set value_opts (__nvmecontrol_value_opts $cmd)
        else
            echo $t
        end
    end
end

function __nvmecontrol_npositionals
    test (count (__nvmecontrol_positionals)) -eq $argv[1]
end

# The subsystem NQNs the last `discover` of the address (the first
# positional argument) found; nothing if that argument is a device.
function __nvmecontrol_nqns
    set -l pos (__nvmecontrol_positionals)
    test (count $pos) -eq 1; or return
    string match -qr '^(/dev/)?nvmeu?[0-9]+((n|ns)[0-9]+)?$' -- $pos[1]; and return
    set -l cache $HOME/.cache
    if set -q XDG_CACHE_HOME[1]; and test -n "$XDG_CACHE_HOME"
        set cache $XDG_CACHE_HOME
    end
    set -l file $cache/nvmecontrol/discovery/(string replace -ra '[:/\[\]]' _ -- $pos[1])
    test -r $file; and string match -rv '^$' <$file
end

complete -c nvmecontrol -f
complete -c nvmecontrol -n "not __fish_seen_subcommand_from $commands" -l help -d 'Show help and exit'
complete -c nvmecontrol -n "not __fish_seen_subcommand_from $commands" -l version -d 'Show the version and exit'
complete -c nvmecontrol -n "not __fish_seen_subcommand_from $commands" -a discover -d 'Show the discovery log page of a discovery controller'
complete -c nvmecontrol -n "not __fish_seen_subcommand_from $commands" -a connect -d 'Connect to an I/O controller'
complete -c nvmecontrol -n "not __fish_seen_subcommand_from $commands" -a connect-all -d 'Connect to every subsystem a discovery controller lists'
complete -c nvmecontrol -n "not __fish_seen_subcommand_from $commands" -a disconnect -d 'Delete a controller, or those of a subsystem'
complete -c nvmecontrol -n "not __fish_seen_subcommand_from $commands" -a disconnect-all -d 'Delete every fabrics controller'
complete -c nvmecontrol -n "not __fish_seen_subcommand_from $commands" -a reconnect -d 'Establish a new association for a controller'
complete -c nvmecontrol -n "not __fish_seen_subcommand_from $commands" -a devlist -d 'List controllers and namespaces'
complete -c nvmecontrol -n "not __fish_seen_subcommand_from $commands" -a identify -d 'Show identify controller or namespace data'
complete -c nvmecontrol -n "not __fish_seen_subcommand_from $commands" -a logpage -d 'Print a log page'
complete -c nvmecontrol -n "not __fish_seen_subcommand_from $commands" -a resv -d 'Reservation commands'
complete -c nvmecontrol -n "not __fish_seen_subcommand_from $commands" -a hostnqn -d 'Show or generate the host NQN and host ID'
complete -c nvmecontrol -n "not __fish_seen_subcommand_from $commands" -a gen-dhchap-key -d 'Generate a DH-HMAC-CHAP secret'
complete -c nvmecontrol -n "not __fish_seen_subcommand_from $commands" -a check-dhchap-key -d 'Check a DH-HMAC-CHAP secret'

# Every subcommand: --help and the output format.
complete -c nvmecontrol -n "__fish_seen_subcommand_from $commands" -l help -d 'Show help and exit'
complete -c nvmecontrol -n "__fish_seen_subcommand_from $commands" -s o -l format -l output-format -x -a 'text json normal' -d 'Output format'

# Options shared by connect, connect-all and reconnect (defined once, as
# FreeBSD's connect.c does), and by discover, identify, logpage, hostnqn.
set -l conn connect connect-all reconnect
complete -c nvmecontrol -n "__fish_seen_subcommand_from $conn" -s F -l flow-control -l flow_control -d 'Request submission queue flow control'
complete -c nvmecontrol -n "__fish_seen_subcommand_from $conn" -l disable-sqflow -d 'Let the controller disable SQ flow control (the default)'
complete -c nvmecontrol -n "__fish_seen_subcommand_from $conn identify logpage resv" -s g -l hdr-digests -l hdr_digests -l hdr-digest -d 'Enable TCP header digests'
complete -c nvmecontrol -n "__fish_seen_subcommand_from $conn identify logpage resv" -s G -l data-digests -l data_digests -l data-digest -d 'Enable TCP data digests'
complete -c nvmecontrol -n "__fish_seen_subcommand_from $conn" -s i -l nr-io-queues -x -d 'Number of I/O queues (default 1)'
complete -c nvmecontrol -n "__fish_seen_subcommand_from $conn" -s k -l keep-alive-tmo -x -d 'Keep alive timeout, seconds (default 120)'
complete -c nvmecontrol -n "__fish_seen_subcommand_from $conn" -s l -l ctrl-loss-tmo -x -d 'Controller loss timeout, seconds (default 600)'
complete -c nvmecontrol -n "__fish_seen_subcommand_from $conn" -s r -l reconnect-delay -x -d 'Delay between reconnect attempts, seconds (default 10)'
complete -c nvmecontrol -n "__fish_seen_subcommand_from $conn" -s Q -l queue-size -x -d 'Entries per I/O queue (default CAP.MQES+1)'
complete -c nvmecontrol -n "__fish_seen_subcommand_from $conn discover" -s t -l transport -x -a tcp -d 'Transport type'
complete -c nvmecontrol -n "__fish_seen_subcommand_from $conn discover identify logpage resv hostnqn" -s q -l hostnqn -x -d 'Host NQN'
complete -c nvmecontrol -n "__fish_seen_subcommand_from $conn discover identify logpage resv hostnqn" -s I -l hostid -x -d 'Host ID (a UUID)'
complete -c nvmecontrol -n "__fish_seen_subcommand_from $conn discover identify logpage resv" -l timeout -x -d 'Seconds to wait for the peer'

# connect and connect-all
complete -c nvmecontrol -n "__fish_seen_subcommand_from connect connect-all" -s c -l cntlid -x -a 'dynamic static' -d 'Controller ID'
complete -c nvmecontrol -n "__fish_seen_subcommand_from connect connect-all" -l backend -x -a 'auto kernel nbd freebsd' -d 'Where the association goes'
complete -c nvmecontrol -n "__fish_seen_subcommand_from connect connect-all" -l nbd-listen -x -d 'Also serve the NBD exports over TCP (host:port)'
complete -c nvmecontrol -n "__fish_seen_subcommand_from connect connect-all" -l no-attach -d 'Do not attach the NBD exports to /dev/nbdX'
complete -c nvmecontrol -n "__fish_seen_subcommand_from connect connect-all" -s J -l config -r -F -a none -d 'nvme-cli JSON config (none: no file)'
complete -c nvmecontrol -n "__fish_seen_subcommand_from connect connect-all" -s O -l dump-config -d 'Print the connections made as JSON config'
complete -c nvmecontrol -n "__fish_seen_subcommand_from connect" -a '(__nvmecontrol_nqns)' -d 'Subsystem NQN'

# discover
complete -c nvmecontrol -n "__fish_seen_subcommand_from discover" -s v -l verbose -d 'Show the identify data of the discovery controller first'
complete -c nvmecontrol -n "__fish_seen_subcommand_from discover" -l walk -d 'Follow referrals to other discovery controllers'

# disconnect: nvme-cli's comma-separated lists
complete -c nvmecontrol -n "__fish_seen_subcommand_from disconnect" -s n -l nqn -x -d 'Subsystem NQNs, comma-separated'
complete -c nvmecontrol -n "__fish_seen_subcommand_from disconnect" -s d -l device -x -a '(__nvmecontrol_devices)' -d 'Devices, comma-separated'

# disconnect, reconnect, identify, logpage: a device first
complete -c nvmecontrol -n "__fish_seen_subcommand_from disconnect reconnect identify logpage; and __nvmecontrol_npositionals 0" -a '(__nvmecontrol_devices)' -d 'Device'
complete -c nvmecontrol -n "__fish_seen_subcommand_from identify logpage" -a '(__nvmecontrol_nqns)' -d 'Subsystem NQN'

# resv: the reservation command, then a namespace (or an address and a subsystem NQN)
complete -c nvmecontrol -n "__fish_seen_subcommand_from resv; and __nvmecontrol_npositionals 0" -x -a 'acquire register release report' -d 'Reservation command'
complete -c nvmecontrol -n "__fish_seen_subcommand_from resv; and __nvmecontrol_npositionals 1" -x -a '(__nvmecontrol_devices)' -d 'Namespace'
complete -c nvmecontrol -n "__fish_seen_subcommand_from resv; and __nvmecontrol_npositionals 2" -x -a '(__nvmecontrol_nqns)' -d 'Subsystem NQN'
complete -c nvmecontrol -n "__fish_seen_subcommand_from resv" -s c -l crkey -x -d 'Current reservation key'
complete -c nvmecontrol -n "__fish_seen_subcommand_from resv" -s k -l nrkey -x -d 'New reservation key (register)'
complete -c nvmecontrol -n "__fish_seen_subcommand_from resv" -s p -x -d 'acquire: preempt key; register: CPTPL'
complete -c nvmecontrol -n "__fish_seen_subcommand_from resv" -l prkey -x -d 'Preempt reservation key (acquire)'
complete -c nvmecontrol -n "__fish_seen_subcommand_from resv" -l cptpl -x -a '0 2 3' -d 'Persist through power loss change (register)'
complete -c nvmecontrol -n "__fish_seen_subcommand_from resv" -s t -l rtype -x -a '1 2 3 4 5 6' -d 'Reservation type (acquire, release)'
complete -c nvmecontrol -n "__fish_seen_subcommand_from resv" -s a -l racqa -l rrela -x -d 'Acquire or release action'
complete -c nvmecontrol -n "__fish_seen_subcommand_from resv" -s r -l rrega -x -a '0 1 2' -d 'Register action (register)'
complete -c nvmecontrol -n "__fish_seen_subcommand_from resv" -s i -l iekey -d 'Ignore existing key (register)'
complete -c nvmecontrol -n "__fish_seen_subcommand_from resv" -s e -l eds -d 'Extended data structure (report)'
complete -c nvmecontrol -n "__fish_seen_subcommand_from resv" -s x -l hex -d 'Print a hex dump (report)'
complete -c nvmecontrol -n "__fish_seen_subcommand_from resv" -s v -l verbose -d 'With -x, the whole buffer (report)'
complete -c nvmecontrol -n "__fish_seen_subcommand_from resv" -s n -l nsid -x -d 'Namespace ID (address or session controller)'

# devlist
complete -c nvmecontrol -n "__fish_seen_subcommand_from devlist" -s h -l human -d 'Sizes with binary unit suffixes'
complete -c nvmecontrol -n "__fish_seen_subcommand_from devlist" -s v -l verbose -d 'The topology: subsystems, paths, namespaces'

# identify
complete -c nvmecontrol -n "__fish_seen_subcommand_from identify" -s v -l verbose -d 'With -x, dump the whole structure'
complete -c nvmecontrol -n "__fish_seen_subcommand_from identify logpage" -s x -l hex -d 'Print a hex dump'
complete -c nvmecontrol -n "__fish_seen_subcommand_from identify logpage" -s n -l nsid -x -d 'Namespace ID'

# logpage (-p: the names of PAGE_NAMES in nvmecontrol/cli/logpage.py and the
# pages `logpage -v help` lists)
complete -c nvmecontrol -n "__fish_seen_subcommand_from logpage" -s p -l page -x -d 'Log page' -a '
    error\t"Error Information" smart\t"SMART / Health Information" health\t"SMART / Health Information"
    fw\t"Firmware Slot Information" firmware\t"Firmware Slot Information"
    changed-ns\t"Changed Namespace List" effects\t"Commands Supported and Effects"
    ana\t"Asymmetric Namespace Access" discovery\tDiscovery
    0x01\t"Error Information" 0x02\t"SMART / Health Information" 0x03\t"Firmware Slot Information"
    0x04\t"Changed Namespace List" 0x05\t"Commands Supported and Effects" 0x06\t"Device Self-test"
    0x07\t"Telemetry Host-Initiated" 0x08\t"Telemetry Controller-Initiated"
    0x09\t"Endurance Group Information" 0x0a\t"Predictable Latency Per NVM Set"
    0x0b\t"Predictable Latency Event Aggregate" 0x0c\t"Asymmetric Namespace Access"
    0x0d\t"Persistent Event Log" 0x0e\t"LBA Status Information"
    0x0f\t"Endurance Group Event Aggregate" 0x70\tDiscovery
    0x80\t"Reservation Notification" 0x81\t"Sanitize Status"'
complete -c nvmecontrol -n "__fish_seen_subcommand_from logpage" -s b -l binary -d 'Write the raw page'
complete -c nvmecontrol -n "__fish_seen_subcommand_from logpage" -s v -l vendor -x -a help -d 'Vendor pages (help lists them)'
complete -c nvmecontrol -n "__fish_seen_subcommand_from logpage" -s f -l lsp -x -d 'Log specific parameter'
complete -c nvmecontrol -n "__fish_seen_subcommand_from logpage" -s i -l lsi -x -d 'Log specific identifier'
complete -c nvmecontrol -n "__fish_seen_subcommand_from logpage" -s r -l rae -d 'Retain asynchronous event'

# hostnqn
complete -c nvmecontrol -n "__fish_seen_subcommand_from hostnqn" -s v -l verbose -d 'Also show the host ID and the sources'
complete -c nvmecontrol -n "__fish_seen_subcommand_from hostnqn" -l generate -d 'Print a new random host NQN'
complete -c nvmecontrol -n "__fish_seen_subcommand_from hostnqn" -l write -d 'With --generate, store it in /etc/nvme'
complete -c nvmecontrol -n "__fish_seen_subcommand_from hostnqn" -l force -d 'With --write, replace existing files'

# DH-HMAC-CHAP secrets where an association is built
complete -c nvmecontrol -n "__fish_seen_subcommand_from connect connect-all discover identify logpage resv" -l dhchap-secret -x -d 'Host secret (DHHC-1)'
complete -c nvmecontrol -n "__fish_seen_subcommand_from connect connect-all discover identify logpage resv" -l dhchap-ctrl-secret -x -d 'Controller secret (DHHC-1): bidirectional'

# gen-dhchap-key and check-dhchap-key
complete -c nvmecontrol -n "__fish_seen_subcommand_from gen-dhchap-key" -s s -l secret -x -d 'Secret in hexadecimal'
complete -c nvmecontrol -n "__fish_seen_subcommand_from gen-dhchap-key" -s l -l key-length -x -a '32 48 64' -d 'Key length, bytes'
complete -c nvmecontrol -n "__fish_seen_subcommand_from gen-dhchap-key" -s n -l nqn -x -d 'NQN for the transformation'
complete -c nvmecontrol -n "__fish_seen_subcommand_from gen-dhchap-key" -s m -l hmac -x -a '0 1 2 3' -d 'Transform HMAC (0 none, 1-3 SHA-256/384/512)'
complete -c nvmecontrol -n "__fish_seen_subcommand_from check-dhchap-key" -s k -l key -x -d 'DHHC-1 secret to check'
