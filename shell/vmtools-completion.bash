# bash completion for every vmtools command: vm-snapshot, vm-plan, vm-apply, vm-gmetric,
# vm-lab, vm-status, vm-replay, vm-web and vm-rebalance.
# Install: packaging/install-venv links it for each command under
# /usr/local/share/bash-completion/completions; by hand, copy it to
# /usr/share/bash-completion/completions/ (one symlink per command name), or `source` it from
# ~/.bashrc. Options are read from each command's --help, so they never drift.

_vmtools_options() {
    "$1" --help 2>/dev/null | grep -oE '(^|[ ,])--?[a-zA-Z][a-zA-Z0-9-]*' | tr -d ' ,' | sort -u
}

_vmtools_reply() {  # _vmtools_reply WORDS CUR: complete CUR from the words
    mapfile -t COMPREPLY < <(compgen -W "$1" -- "$2")
}

_vmtools_complete() {
    local cur prev cmd
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD-1]}
    cmd=${COMP_WORDS[0]}
    case $prev in
        -f|--format) _vmtools_reply "json table" "$cur"; return ;;
        --objective) _vmtools_reply "auto consolidate balance repair" "$cur"; return ;;
        --demand) _vmtools_reply "last mean p50 p90 p95 max" "$cur"; return ;;
        --driver|--migration) _vmtools_reply "xen xend-xmlrpc xm-ssh xl-ssh" "$cur"; return ;;
        --toolstack) _vmtools_reply "xl xm auto" "$cur"; return ;;
        --cpu-demand) _vmtools_reply "usage vcpus" "$cur"; return ;;
        --shutdown-command) _vmtools_reply "poweroff shutdown" "$cur"; return ;;
        --example) _vmtools_reply "lab hotspot" "$cur"; return ;;
        --baseline) _vmtools_reply "none threshold sandpiper thr-mmt" "$cur"; return ;;
        --solver) _vmtools_reply "cbc highs" "$cur"; return ;;
        --scenario)
            _vmtools_reply "steady hotspot diurnal maintenance" "$cur"
            mapfile -t -O "${#COMPREPLY[@]}" COMPREPLY < <(compgen -f -- "$cur"); return ;;
        -o|--output|--input|-i|--constraints|--hosts|--journal|--resume|--known-hosts|--ssh-key|--config|-c|--snapshot|--power-model|--ipmi-credentials|--tls-cert|--tls-key|--token-file|--xapi-credentials|--xapi-ca)
            mapfile -t COMPREPLY < <(compgen -f -- "$cur"); return ;;
        --state|--state-dir|--dir|--archive|--runs|-a|--sysfs-root|--replay-dir|--image-dir)
            mapfile -t COMPREPLY < <(compgen -d -- "$cur"); return ;;
        --gmetad|--gmond|--cluster|--time-limit|--threads|--seed|--interval|--duration|--timeout|--parallel|-P|--per-host|-k|--keep|--listen|--port|--session-minutes)
            COMPREPLY=(); return ;;
    esac
    if [[ $cur == -* ]]; then
        _vmtools_reply "$(_vmtools_options "$cmd")" "$cur"
    elif [ "$cmd" != vm-rebalance ] && [ "$cmd" != vm-lab ]; then
        mapfile -t COMPREPLY < <(compgen -f -- "$cur")
    fi
}
complete -F _vmtools_complete vm-snapshot vm-plan vm-apply vm-gmetric vm-lab vm-status vm-replay vm-web vm-rebalance
