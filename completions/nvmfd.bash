# bash completion for nvmfd(8)
#
# Works without the bash-completion package.
# tests/cli/test_docs_in_step.py checks the options against the CLI.

# Offers every word of "$@" that starts with $cur.
_nvmfd_add() {
    local w
    for w in "$@"; do
        [[ $w == "$cur"* ]] && _nvmfd_cands+=("$w")
    done
}

# A namespace's backing store: a file or block device, or memory.
_nvmfd_add_device() {
    local f
    _nvmfd_add mem: ramdisk:
    while IFS= read -r f; do
        _nvmfd_cands+=("$f")
    done < <(compgen -f -- "$cur")
    compopt -o filenames 2>/dev/null
    # "mem:" and "ramdisk:" need a size right after them.
    [[ ${_nvmfd_cands[*]} == *: ]] && [[ ${#_nvmfd_cands[@]} == 1 ]] &&
        compopt -o nospace 2>/dev/null
    return 0
}

_nvmfd() {
    local line=${COMP_LINE:0:COMP_POINT} cur prev cmd opts args i IFS=$' \t\n'
    local -a words=() _nvmfd_cands=()
    # Split on blanks ourselves: COMP_WORDS also splits at ":" and "=".
    read -ra words <<<"$line"
    [[ -z $line || $line == *[[:blank:]] ]] && words+=("")
    cur=${words[${#words[@]} - 1]}
    prev=
    (( ${#words[@]} > 1 )) && prev=${words[${#words[@]} - 2]}

    # As nvmfd's _split(): -S options may come before the subcommand.
    for (( i = 1; i < ${#words[@]} - 1; )); do
        case ${words[i]} in
        -S | --socket) (( i += 2 )) ;;
        --socket=* | -S?*) (( i++ )) ;;
        *) break ;;
        esac
    done
    cmd=
    if (( i < ${#words[@]} - 1 )); then
        case ${words[i]} in
        list | terminate | ns-add | ns-remove | ana-state | reauth | host-add | host-remove | save)
            cmd=${words[i]} ;;
        esac
    fi

    case $cmd in
    list)
        opts='-S --socket --json -h --help'
        args='-S --socket' ;;
    terminate)
        opts='-S --socket -c --id --host -a --all -h --help'
        args='-S --socket -c --id --host' ;;
    ns-add)
        opts='-S --socket --nsid --subsystem -r --read-only --block-size --ana-grpid -h --help'
        args='-S --socket --nsid --subsystem --block-size --ana-grpid' ;;
    ns-remove)
        opts='-S --socket --subsystem -h --help'
        args='-S --socket --subsystem' ;;
    ana-state | reauth)
        opts='-S --socket -h --help'
        args='-S --socket' ;;
    host-add)
        opts='-S --socket --subsystem --dhchap-key --dhchap-ctrl-key --dhchap-hash --dhchap-dhgroup -h --help'
        args='-S --socket --subsystem --dhchap-key --dhchap-ctrl-key --dhchap-hash --dhchap-dhgroup' ;;
    host-remove)
        opts='-S --socket --subsystem -h --help'
        args='-S --socket --subsystem' ;;
    save)
        opts='-S --socket -h --help'
        args='-S --socket' ;;
    *)
        opts='-a --address -p --port -n --subnqn -c --config -r --read-only -F --foreground -d
            -g --hdr-digests -G --data-digests --allow-host --block-size -S --socket
            --port-file --pid-file --log-file -P --discovery-port -t --transport -K --kernel
            --dhchap-key --dhchap-ctrl-key --dhchap-hash --dhchap-dhgroup -h --help'
        args='-a --address -p --port -n --subnqn -c --config --allow-host --block-size
            -S --socket --port-file --pid-file --log-file -P --discovery-port -t --transport
            --dhchap-key --dhchap-ctrl-key --dhchap-hash --dhchap-dhgroup' ;;
    esac
    args=" ${args//[[:space:]]/ } "

    # The value of an option: after "--opt=" in the same word, or the next word.
    local optname= vhead= value=$cur w
    if [[ $cur == --*=* ]]; then
        optname=${cur%%=*} vhead=${cur%%=*}= value=${cur#*=}
    elif [[ -n $prev && $args == *" $prev "* ]]; then
        optname=$prev
    fi
    if [[ -n $optname ]]; then
        case $cmd:$optname in
        *:--dhchap-hash)
            for w in 'hmac(sha256)' 'hmac(sha384)' 'hmac(sha512)'; do
                [[ $w == "$value"* ]] && _nvmfd_cands+=("$vhead$w")
            done ;;
        *:--dhchap-dhgroup)
            for w in null ffdhe2048 ffdhe3072 ffdhe4096 ffdhe6144 ffdhe8192; do
                [[ $w == "$value"* ]] && _nvmfd_cands+=("$vhead$w")
            done ;;
        :-t | :--transport)
            [[ tcp == "$value"* ]] && _nvmfd_cands+=("${vhead}tcp") ;;
        *:--block-size)
            for w in 512 4096; do
                [[ $w == "$value"* ]] && _nvmfd_cands+=("$vhead$w")
            done ;;
        :-c | :--config | *:-S | *:--socket | :--port-file | :--pid-file | :--log-file)
            while IFS= read -r w; do
                _nvmfd_cands+=("$vhead$w")
            done < <(compgen -f -- "$value")
            compopt -o filenames 2>/dev/null ;;
        esac
    elif [[ $cur == -* ]]; then
        _nvmfd_add $opts
    else
        case $cmd in
        '')
            (( i == ${#words[@]} - 1 )) &&
                _nvmfd_add list terminate ns-add ns-remove ana-state reauth host-add host-remove save
            _nvmfd_add_device ;;
        ns-add)
            _nvmfd_add_device ;;
        ana-state)
            _nvmfd_add optimized non-optimized inaccessible persistent-loss change ;;
        save)
            _nvmfd_add -
            while IFS= read -r w; do
                _nvmfd_cands+=("$w")
            done < <(compgen -f -- "$cur")
            compopt -o filenames 2>/dev/null ;;
        esac
    fi

    # Readline replaces only what follows the last ":" or "=" of the word.
    local word=${COMP_WORDS[COMP_CWORD]-}
    local head=${cur%"$word"}
    COMPREPLY=("${_nvmfd_cands[@]#"$head"}")
    return 0
}

complete -F _nvmfd nvmfd
