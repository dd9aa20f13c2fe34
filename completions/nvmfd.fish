# fish completion for nvmfd(8)
# tests/cli/test_docs_in_step.py checks the options against the CLI.

set -l subcommands list terminate ns-add ns-remove ana-state reauth host-add host-remove save

# No subcommand yet: the daemon's options and devices apply.  As nvmfd's
# _split(), only -S options may come before a subcommand.
function __nvmfd_subcommand
    set -l tokens (commandline -opc)
    set -e tokens[1]
    set -l skip 0
    for t in $tokens
        if test $skip = 1
            set skip 0
        else if contains -- $t -S --socket
            set skip 1
        else if string match -qr -- '^(--socket=|-S.)' $t
            continue
        else if contains -- $t list terminate ns-add ns-remove ana-state reauth host-add host-remove save
            echo $t
            return 0
        else
            return 1
        end
    end
    return 1
end

function __nvmfd_using
    test "$(__nvmfd_subcommand)" = "$argv[1]"
end

function __nvmfd_daemon
    not __nvmfd_subcommand >/dev/null
end

# Before anything but -S options: a subcommand may still come.
function __nvmfd_at_start
    set -l tokens (commandline -opc)
    set -e tokens[1]
    set -l skip 0
    for t in $tokens
        if test $skip = 1
            set skip 0
        else if contains -- $t -S --socket
            set skip 1
        else if not string match -qr -- '^(--socket=|-S.)' $t
            return 1
        end
    end
    return 0
end

complete -c nvmfd -s h -l help -d 'Show help and exit'
complete -c nvmfd -s S -l socket -r -F -d 'Control socket'

complete -c nvmfd -n __nvmfd_at_start -a list -d 'List the associations (like ctladm nvlist)'
complete -c nvmfd -n __nvmfd_at_start -a terminate -d 'Terminate associations (like ctladm nvterminate)'
complete -c nvmfd -n __nvmfd_at_start -a ns-add -d 'Add a namespace to the running daemon'
complete -c nvmfd -n __nvmfd_at_start -a ns-remove -d 'Remove a namespace from the running daemon'
complete -c nvmfd -n __nvmfd_at_start -a ana-state -d 'Set the state of an ANA group on a port'
complete -c nvmfd -n __nvmfd_at_start -a reauth -d 'Ask a host to authenticate again'
complete -c nvmfd -n __nvmfd_at_start -a host-add -d 'Allow a host on a subsystem'
complete -c nvmfd -n __nvmfd_at_start -a host-remove -d 'Take a host off a subsystem'
complete -c nvmfd -n __nvmfd_at_start -a save -d 'Write the running configuration (nvmetcli JSON)'

# The daemon; a device is a file or block device, mem:SIZE or ramdisk:SIZE.
complete -c nvmfd -n __nvmfd_daemon -a 'mem: ramdisk:' -d 'Memory: mem:SIZE (K, M, G, T)'
complete -c nvmfd -n __nvmfd_daemon -s a -l address -x -d 'Listen address (repeatable)'
complete -c nvmfd -n __nvmfd_daemon -s p -l port -x -d 'TCP port for discovery and I/O (default 4420)'
complete -c nvmfd -n __nvmfd_daemon -s n -l subnqn -x -d 'Subsystem NQN'
complete -c nvmfd -n __nvmfd_daemon -s c -l config -r -F -d 'nvmetcli saved configuration (JSON)'
complete -c nvmfd -n __nvmfd_daemon -s r -l read-only -d 'Export the namespaces read-only'
complete -c nvmfd -n __nvmfd_daemon -s F -l foreground -d 'Stay in the foreground and log every association'
complete -c nvmfd -n __nvmfd_daemon -s d -d 'Same as -F'
complete -c nvmfd -n __nvmfd_daemon -s g -l hdr-digests -d 'Permit header digests'
complete -c nvmfd -n __nvmfd_daemon -s G -l data-digests -d 'Permit data digests'
complete -c nvmfd -n __nvmfd_daemon -l allow-host -x -d 'Admit only this host NQN (repeatable)'
complete -c nvmfd -n '__nvmfd_daemon; or __nvmfd_using ns-add' -l block-size -x -a '512 4096' -d 'Logical block size'
complete -c nvmfd -n __nvmfd_daemon -l port-file -r -F -d 'Write the bound ports here'
complete -c nvmfd -n __nvmfd_daemon -l pid-file -r -F -d 'Write the process ID here'
complete -c nvmfd -n __nvmfd_daemon -l log-file -r -F -d 'Log here'
complete -c nvmfd -n __nvmfd_daemon -s P -l discovery-port -x -d 'Serve discovery only on this port (FreeBSD)'
complete -c nvmfd -n __nvmfd_daemon -s t -l transport -x -a tcp -d 'Transport'
complete -c nvmfd -n __nvmfd_daemon -s K -l kernel -d 'Kernel I/O (FreeBSD nvmft; refused)'
complete -c nvmfd -n '__nvmfd_daemon; or __nvmfd_using host-add' -l dhchap-key -x -d 'DH-HMAC-CHAP secret of the host(s)'
complete -c nvmfd -n '__nvmfd_daemon; or __nvmfd_using host-add' -l dhchap-ctrl-key -x -d 'Controller secret (bidirectional)'
complete -c nvmfd -n '__nvmfd_daemon; or __nvmfd_using host-add' -l dhchap-hash -x -a 'hmac(sha256) hmac(sha384) hmac(sha512)' -d 'DH-HMAC-CHAP hash'
complete -c nvmfd -n '__nvmfd_daemon; or __nvmfd_using host-add' -l dhchap-dhgroup -x -a 'null ffdhe2048 ffdhe3072 ffdhe4096 ffdhe6144 ffdhe8192' -d 'DH group'

# Subcommands
complete -c nvmfd -n '__nvmfd_using list' -f -l json -d 'Print JSON'
complete -c nvmfd -n '__nvmfd_using terminate' -f
complete -c nvmfd -n '__nvmfd_using terminate' -s c -l id -x -d 'The association with this ID'
complete -c nvmfd -n '__nvmfd_using terminate' -l host -x -d 'Every association of this host NQN'
complete -c nvmfd -n '__nvmfd_using terminate' -s a -l all -d 'Every association'
complete -c nvmfd -n '__nvmfd_using ns-add' -a 'mem: ramdisk:' -d 'Memory: mem:SIZE (K, M, G, T)'
complete -c nvmfd -n '__nvmfd_using ns-add' -l nsid -x -d 'Namespace ID (default: the lowest free)'
complete -c nvmfd -n '__nvmfd_using ns-add; or __nvmfd_using ns-remove' -l subsystem -x -d 'Subsystem NQN (needed when several)'
complete -c nvmfd -n '__nvmfd_using ns-add' -s r -l read-only -d 'Export the namespace read-only'
complete -c nvmfd -n '__nvmfd_using ns-add' -l ana-grpid -x -d 'ANA group of the namespace (default 1)'
complete -c nvmfd -n '__nvmfd_using ns-remove' -f
complete -c nvmfd -n '__nvmfd_using ana-state' -f -a 'optimized non-optimized inaccessible persistent-loss change' -d 'ANA state'
complete -c nvmfd -n '__nvmfd_using host-add; or __nvmfd_using host-remove' -f -l subsystem -x -d 'Subsystem NQN (needed when several)'
complete -c nvmfd -n '__nvmfd_using save' -a '-' -d 'Standard output'
