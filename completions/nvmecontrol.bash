# bash completion for nvmecontrol(8)
#
# Device names come from sysfs and the runtime directory, subsystem NQNs
# from the cache that `nvmecontrol discover` writes: TAB only reads files
# and never starts Python.  Works without the bash-completion package.
# tests/cli/test_docs_in_step.py checks the options against the CLI.

# Options shared by connect, connect-all and reconnect (defined once, as
# FreeBSD's connect.c does); the *_args lists are those that take a value.
_nvmecontrol_conn_opts='-F --flow-control --flow_control --disable-sqflow
    -g --hdr-digests --hdr_digests --hdr-digest
    -G --data-digests --data_digests --data-digest -i --nr-io-queues -k --keep-alive-tmo
    -l --ctrl-loss-tmo -r --reconnect-delay -t --transport -q --hostnqn -I --hostid
    -Q --queue-size --timeout -o --format --output-format --help'
_nvmecontrol_conn_args='-i --nr-io-queues -k --keep-alive-tmo -l --ctrl-loss-tmo
    -r --reconnect-delay -t --transport -q --hostnqn -I --hostid -Q --queue-size
    --timeout -o --format --output-format'
_nvmecontrol_backend_opts='--backend --nbd-listen --no-attach -J --config -O --dump-config'
# DH-HMAC-CHAP secrets: connect, connect-all, discover, identify and logpage.
_nvmecontrol_auth_opts='--dhchap-secret --dhchap-ctrl-secret'
_nvmecontrol_remote_opts='-q --hostnqn -I --hostid -g --hdr-digests --hdr_digests --hdr-digest
    -G --data-digests --data_digests --data-digest --timeout -o --format --output-format --help'
_nvmecontrol_remote_args='-q --hostnqn -I --hostid --timeout -o --format --output-format'
_nvmecontrol_format_opts='-o --format --output-format --help'
_nvmecontrol_format_args='-o --format --output-format'
# logpage -p: the names of PAGE_NAMES in nvmecontrol/cli/logpage.py and the
# pages `logpage -v help` lists.
_nvmecontrol_pages='error smart health fw firmware changed-ns effects ana discovery
    0x01 0x02 0x03 0x04 0x05 0x06 0x07 0x08 0x09 0x0a 0x0b 0x0c 0x0d 0x0e 0x0f
    0x70 0x80 0x81'

# resv: the options of each command (nvmecontrol/cli/resv.py), then those of all.
_nvmecontrol_resv_acquire='-c --crkey -p --prkey -t --rtype -a --racqa'
_nvmecontrol_resv_register='-c --crkey -k --nrkey -r --rrega -i --iekey -p --cptpl'
_nvmecontrol_resv_release='-c --crkey -t --rtype -a --rrela'
_nvmecontrol_resv_report='-e --eds -x --hex -v --verbose'
_nvmecontrol_resv_args='-c --crkey -k --nrkey -p --prkey --cptpl -t --rtype -a --racqa --rrela
    -r --rrega -n --nsid'

# The runtime directory, as nvmecontrol/backends/runtime.py chooses it.
_nvmecontrol_runtime_dir() {
    if [[ -n ${NVMECONTROL_RUNTIME_DIR-} ]]; then
        _nvmecontrol_rt=$NVMECONTROL_RUNTIME_DIR
    elif (( EUID == 0 )); then
        _nvmecontrol_rt=/run/nvmecontrol
    elif [[ -n ${XDG_RUNTIME_DIR-} ]]; then
        _nvmecontrol_rt=$XDG_RUNTIME_DIR/nvmecontrol
    else
        _nvmecontrol_rt=/tmp/nvmecontrol-$EUID
    fi
}

# Adds every word of "$@" that starts with $cur to _nvmecontrol_cands.
_nvmecontrol_add() {
    local w
    for w in "$@"; do
        [[ $w == "$cur"* ]] && _nvmecontrol_cands+=("$w")
    done
}

# Kernel controllers and namespaces, userspace sessions and their namespaces.
_nvmecontrol_add_devices() {
    local sys=${NVMECONTROL_SYSFS_ROOT:-/sys} d m n nsid
    local -a found=()
    for d in "$sys"/class/nvme/nvme*; do
        n=${d##*/}
        [[ $n =~ ^nvme[0-9]+$ ]] || continue
        found+=("$n")
        for m in "$d/$n"n*; do
            [[ ${m##*/} =~ ^nvme[0-9]+n[0-9]+$ ]] && found+=("${m##*/}")
        done
    done
    for d in "$sys"/class/nvme-subsystem/*/nvme*; do
        [[ ${d##*/} =~ ^nvme[0-9]+n[0-9]+$ ]] && found+=("${d##*/}")
    done
    if [[ ! -d $sys/class/nvme ]]; then
        # FreeBSD: no sysfs, the controllers and namespaces are in /dev.
        for d in /dev/nvme*; do
            [[ ${d##*/} =~ ^nvme[0-9]+(ns[0-9]+)?$ ]] && found+=("${d##*/}")
        done
    fi
    _nvmecontrol_runtime_dir
    for d in "$_nvmecontrol_rt"/nvmeu*; do
        n=${d##*/}
        [[ -d $d && $n =~ ^nvmeu[0-9]+$ ]] || continue
        found+=("$n")
        [[ -r $d/namespaces ]] || continue
        while IFS= read -r nsid || [[ -n $nsid ]]; do
            [[ $nsid =~ ^[0-9]+$ ]] && found+=("${n}ns$nsid")
        done <"$d/namespaces"
    done
    _nvmecontrol_add "${found[@]}"
}

# The subsystem NQNs the last `discover` of address $1 found.
_nvmecontrol_add_nqns() {
    local file=${XDG_CACHE_HOME:-$HOME/.cache}/nvmecontrol/discovery/${1//[:\/\[\]]/_}
    local nqn
    local -a found=()
    [[ -n $1 && -r $file ]] || return
    while IFS= read -r nqn || [[ -n $nqn ]]; do
        [[ -n $nqn ]] && found+=("$nqn")
    done <"$file"
    _nvmecontrol_add "${found[@]}"
}

_nvmecontrol_is_device() {
    [[ ${1#/dev/} =~ ^nvmeu?[0-9]+((n|ns)[0-9]+)?$ ]]
}

_nvmecontrol() {
    local line=${COMP_LINE:0:COMP_POINT} cur prev cmd opts args w i IFS=$' \t\n'
    local -a words=() positional=() _nvmecontrol_cands=()
    # Split on blanks ourselves: COMP_WORDS also splits at ":" and "=",
    # which NQNs, addresses and --opt=value contain.
    read -ra words <<<"$line"
    [[ -z $line || $line == *[[:blank:]] ]] && words+=("")
    cur=${words[${#words[@]} - 1]}
    prev=
    (( ${#words[@]} > 1 )) && prev=${words[${#words[@]} - 2]}

    # The subcommand: the first word after nvmecontrol that is not an option.
    cmd=
    for (( i = 1; i < ${#words[@]} - 1; i++ )); do
        [[ ${words[i]} == -* ]] && continue
        cmd=${words[i]}
        break
    done

    if [[ -z $cmd ]]; then
        if [[ $cur == -* ]]; then
            _nvmecontrol_add --help --version
        else
            _nvmecontrol_add discover connect connect-all disconnect disconnect-all \
                reconnect devlist identify logpage resv hostnqn gen-dhchap-key \
                check-dhchap-key
        fi
    else
        case $cmd in
        discover)
            opts="-v --verbose --walk -t --transport -q --hostnqn -I --hostid --timeout
                $_nvmecontrol_auth_opts $_nvmecontrol_format_opts"
            args="-t --transport -q --hostnqn -I --hostid --timeout $_nvmecontrol_auth_opts
                $_nvmecontrol_format_args" ;;
        connect)
            opts="-c --cntlid $_nvmecontrol_conn_opts $_nvmecontrol_backend_opts
                $_nvmecontrol_auth_opts"
            args="-c --cntlid $_nvmecontrol_conn_args --backend --nbd-listen -J --config
                $_nvmecontrol_auth_opts" ;;
        connect-all)
            opts="-c --cntlid $_nvmecontrol_conn_opts $_nvmecontrol_backend_opts
                $_nvmecontrol_auth_opts"
            args="-c --cntlid $_nvmecontrol_conn_args --backend --nbd-listen -J --config
                $_nvmecontrol_auth_opts" ;;
        reconnect)
            opts=$_nvmecontrol_conn_opts
            args=$_nvmecontrol_conn_args ;;
        disconnect)
            opts="-n --nqn -d --device $_nvmecontrol_format_opts"
            args="-n --nqn -d --device $_nvmecontrol_format_args" ;;
        disconnect-all)
            opts=$_nvmecontrol_format_opts
            args=$_nvmecontrol_format_args ;;
        devlist)
            opts="-h --human -v --verbose $_nvmecontrol_format_opts"
            args=$_nvmecontrol_format_args ;;
        identify)
            opts="-v --verbose -x --hex -n --nsid $_nvmecontrol_remote_opts $_nvmecontrol_auth_opts"
            args="-n --nsid $_nvmecontrol_remote_args $_nvmecontrol_auth_opts" ;;
        logpage)
            opts="-p --page -x --hex -b --binary -v --vendor -f --lsp -i --lsi -r --rae
                -n --nsid $_nvmecontrol_remote_opts $_nvmecontrol_auth_opts"
            args="-p --page -v --vendor -f --lsp -i --lsi -n --nsid $_nvmecontrol_remote_args
                $_nvmecontrol_auth_opts" ;;
        resv)
            opts="$_nvmecontrol_resv_acquire $_nvmecontrol_resv_register --rrela
                $_nvmecontrol_resv_report -n --nsid $_nvmecontrol_remote_opts
                $_nvmecontrol_auth_opts"
            args="$_nvmecontrol_resv_args $_nvmecontrol_remote_args $_nvmecontrol_auth_opts" ;;
        hostnqn)
            opts="-v --verbose --generate --write --force -q --hostnqn -I --hostid
                $_nvmecontrol_format_opts"
            args="-q --hostnqn -I --hostid $_nvmecontrol_format_args" ;;
        gen-dhchap-key)
            opts="-s --secret -l --key-length -n --nqn -m --hmac $_nvmecontrol_format_opts"
            args="-s --secret -l --key-length -n --nqn -m --hmac $_nvmecontrol_format_args" ;;
        check-dhchap-key)
            opts="-k --key $_nvmecontrol_format_opts"
            args="-k --key $_nvmecontrol_format_args" ;;
        *)
            return 0 ;;
        esac

        args=" ${args//[[:space:]]/ } "
        # The positional arguments before the current word.
        for (( i++; i < ${#words[@]} - 1; i++ )); do
            w=${words[i]}
            if [[ $w == -* ]]; then
                [[ $w != *=* && $args == *" $w "* ]] && (( i++ ))
            else
                positional+=("$w")
            fi
        done

        local value= optname=
        if [[ $cur == --*=* ]]; then
            optname=${cur%%=*} value=${cur#*=}
        elif [[ -n $prev && $args == *" $prev "* ]]; then
            optname=$prev
        fi
        if [[ -n $optname ]]; then
            local -a values=()
            case $optname in
            -t | --transport) values=(tcp) ;;
            -o | --format | --output-format) values=(text json normal) ;;
            --backend) values=(auto kernel nbd freebsd) ;;
            -c | --cntlid) values=(dynamic static) ;;
            -d | --device) [[ $cmd == disconnect ]] && _nvmecontrol_add_devices ;;
            -J | --config)
                # "none", or a file (file names only as a word of their own).
                values=(none)
                if [[ $cur != --*=* ]]; then
                    local f
                    while IFS= read -r f; do _nvmecontrol_cands+=("$f"); done \
                        < <(compgen -f -- "$cur")
                fi ;;
            -p | --page) values=($_nvmecontrol_pages) ;;
            -v | --vendor) values=(help) ;;
            -m | --hmac) [[ $cmd == gen-dhchap-key ]] && values=(0 1 2 3) ;;
            -l | --key-length) [[ $cmd == gen-dhchap-key ]] && values=(32 48 64) ;;
            esac
            if [[ $cur == --*=* ]]; then
                for w in "${values[@]}"; do
                    [[ $w == "$value"* ]] && _nvmecontrol_cands+=("$optname=$w")
                done
            else
                _nvmecontrol_add "${values[@]}"
            fi
        elif [[ $cur == -* ]]; then
            if [[ $cmd == resv && ${positional[0]-} =~ ^(acquire|register|release|report)$ ]]
            then
                # Only the options of that command, and those of every one.
                local own=_nvmecontrol_resv_${positional[0]}
                opts="${!own} -n --nsid $_nvmecontrol_remote_opts $_nvmecontrol_auth_opts"
            fi
            _nvmecontrol_add $opts
        else
            case $cmd:${#positional[@]} in
            disconnect:0 | reconnect:0 | identify:0 | logpage:0)
                _nvmecontrol_add_devices ;;
            connect:1)
                _nvmecontrol_add_nqns "${positional[0]}" ;;
            identify:1 | logpage:1)
                _nvmecontrol_is_device "${positional[0]}" ||
                    _nvmecontrol_add_nqns "${positional[0]}" ;;
            resv:0)
                _nvmecontrol_add acquire register release report ;;
            resv:1)
                _nvmecontrol_add_devices ;;
            resv:2)
                _nvmecontrol_is_device "${positional[1]}" ||
                    _nvmecontrol_add_nqns "${positional[1]}" ;;
            esac
        fi
    fi

    # Readline replaces only what follows the last ":" or "=" of the word:
    # drop that part of the word from every candidate.
    local word=${COMP_WORDS[COMP_CWORD]-}
    local head=${cur%"$word"}
    COMPREPLY=("${_nvmecontrol_cands[@]#"$head"}")
    return 0
}

complete -F _nvmecontrol nvmecontrol
