# bash completion for vm-snapshot, vm-plan, vm-apply, vm-gmetric, vm-replay and vm-rebalance.
# Install: copy to /usr/share/bash-completion/completions/ (one symlink per command name), or
# `source` it from ~/.bashrc. Options are read from each command's --help, so they never drift.

_vmtools_options() {
    local cmd=$1
    "$cmd" --help 2>/dev/null | grep -oE '(^|[ ,])--?[a-zA-Z][a-zA-Z0-9-]*' | tr -d ' ,' | sort -u
}

_vmtools_complete() {
    local cur prev cmd
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD-1]}
    cmd=${COMP_WORDS[0]}
    case $prev in
        -f|--format) COMPREPLY=($(compgen -W "json table" -- "$cur")); return ;;
        --objective) COMPREPLY=($(compgen -W "auto consolidate balance repair" -- "$cur")); return ;;
        --demand) COMPREPLY=($(compgen -W "last mean p50 p90 p95 max" -- "$cur")); return ;;
        --driver|--migration) COMPREPLY=($(compgen -W "xen xend-xmlrpc xm-ssh xl-ssh" -- "$cur")); return ;;
        --toolstack) COMPREPLY=($(compgen -W "xl xm auto" -- "$cur")); return ;;
        --shutdown-command) COMPREPLY=($(compgen -W "poweroff shutdown" -- "$cur")); return ;;
        --cpu-demand) COMPREPLY=($(compgen -W "usage vcpus" -- "$cur")); return ;;
        --example) COMPREPLY=($(compgen -W "lab hotspot" -- "$cur")); return ;;
        --baseline) COMPREPLY=($(compgen -W "none threshold sandpiper thr-mmt" -- "$cur")); return ;;
        -o|--output|--input|--constraints|--hosts|--journal|--resume|--known-hosts|--ssh-key|--config|-c|--power-model|--ipmi-credentials)
            COMPREPLY=($(compgen -f -- "$cur")); return ;;
        --state|--state-dir|-a) COMPREPLY=($(compgen -d -- "$cur")); return ;;
    esac
    if [[ $cur == -* ]]; then
        if [ "$cmd" = vm-rebalance ]; then
            COMPREPLY=($(compgen -W "-c -a -k -n -q -h" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "$(_vmtools_options "$cmd")" -- "$cur"))
        fi
    else
        COMPREPLY=($(compgen -f -- "$cur"))
    fi
}
complete -F _vmtools_complete vm-snapshot vm-plan vm-apply vm-gmetric vm-replay vm-rebalance
