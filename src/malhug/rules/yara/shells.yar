// Interactive shells handed to a remote peer, and commands run in ways that hide them.

rule reverse_shell_dev_tcp {
  meta:
    id = "reverse-shell-dev-tcp"
    category = "reverse_shell"
    severity = "high"
    description = "connects to a remote host through bash's /dev/tcp or /dev/udp device"
  strings:
    $dev = /\/dev\/(tcp|udp)\/[A-Za-z0-9.\-\[\]:${}_]{1,255}\/[0-9${]/
  condition:
    $dev
}

rule reverse_shell_bash_interactive {
  meta:
    id = "reverse-shell-bash-interactive"
    category = "reverse_shell"
    severity = "critical"
    description = "starts an interactive bash whose input and output are redirected (bash -i >& ...)"
  strings:
    $bash = /\bbash\s+-i\s*[0-9]?(>&|<&|&>|>\s*\/dev\/)/
  condition:
    $bash
}

rule reverse_shell_sh_interactive {
  meta:
    id = "reverse-shell-sh-interactive"
    category = "reverse_shell"
    severity = "high"
    description = "starts an interactive sh/dash/zsh whose streams are redirected or piped"
  strings:
    $sh = /(\/bin\/|[\s;|&('"`])(sh|dash|zsh|ksh|ash)\s+-i\s*([0-9]?[<>]|\|)/
  condition:
    $sh
}

rule reverse_shell_netcat_exec {
  meta:
    id = "reverse-shell-netcat-exec"
    category = "reverse_shell"
    severity = "critical"
    description = "netcat/ncat hands a shell to a network peer (-e, -c or --exec)"
  strings:
    $flag = /\b(nc|ncat|netcat)(\.exe|\.traditional|\.openbsd)?\s([^\n]{0,120}\s)?(-[ec]|--exec|--sh-exec)\s*['"]?(\/usr)?(\/bin\/)?((ba|z|da|k)?sh\b|cmd(\.exe)?\b|powershell(\.exe)?\b)/
  condition:
    $flag
}

rule reverse_shell_socat_exec {
  meta:
    id = "reverse-shell-socat-exec"
    category = "reverse_shell"
    severity = "critical"
    description = "socat connects a network stream to a spawned program (exec: / system:)"
  strings:
    $socat = /\bsocat\s[^\n]{0,160}\b(exec|system):/ nocase
  condition:
    $socat
}

rule reverse_shell_fifo_netcat {
  meta:
    id = "reverse-shell-fifo-netcat"
    category = "reverse_shell"
    severity = "critical"
    description = "named pipe looped through a shell and a network client (mkfifo ... | nc)"
  strings:
    $fifo = /\bmk(fifo|nod)\s[^\n]{0,200}\|\s*(nc|ncat|netcat|telnet|openssl\s+s_client)\b/
    $fifo_reversed = /\bmk(fifo|nod)\s[^\n]{0,200}\b(nc|ncat|netcat|telnet)\s[^\n]{0,120}\|\s*(\/usr)?(\/bin\/)?(ba|z|da|k)?sh\b/
  condition:
    any of them
}

rule reverse_shell_python_pty {
  meta:
    id = "reverse-shell-python-pty"
    category = "reverse_shell"
    severity = "high"
    description = "spawns a shell on a pseudo-terminal (pty.spawn of /bin/sh), the usual shell upgrade"
  strings:
    $spawn = /pty\.spawn\(\s*['"](\/usr)?(\/bin\/)?(ba|z|da|k)?sh['"]/
  condition:
    $spawn
}

rule reverse_shell_socket_dup2 {
  meta:
    id = "reverse-shell-socket-dup2"
    category = "reverse_shell"
    severity = "high"
    description = "redirects standard input/output onto a socket (os.dup2(s.fileno(), 0))"
  strings:
    $dup = /dup2\(\s*[A-Za-z_][A-Za-z0-9_.]{0,40}\.fileno\(\)\s*,\s*[012]\s*\)/
  condition:
    $dup
}

rule reverse_shell_powershell_tcpclient {
  meta:
    id = "reverse-shell-powershell-tcpclient"
    category = "reverse_shell"
    severity = "high"
    description = "PowerShell opens a raw TCP client, the core of PowerShell reverse shells"
  strings:
    $new = /New-Object\s+(System\.)?Net\.Sockets\.TCPClient\b/ nocase
    $ctor = /\[(System\.)?Net\.Sockets\.TCPClient\]::new\s*\(/ nocase
  condition:
    any of them
}

rule reverse_shell_script_socket {
  meta:
    id = "reverse-shell-script-socket"
    category = "reverse_shell"
    severity = "high"
    description = "perl/ruby/php one-liner that opens a socket from the command line"
  strings:
    $perl = /perl\s+-e\s*['"][^\n]{0,40}use\s+Socket\b/
    $ruby = /ruby\s+-rsocket\s+-e\b/
    $php = /php\s+-r\s*['"][^\n]{0,60}fsockopen\s*\(/
  condition:
    any of them
}

rule command_exec_inline_import {
  meta:
    id = "command-exec-inline-import"
    category = "command_exec"
    severity = "high"
    description = "runs a shell command through an inline __import__ (__import__('os').system(...))"
  strings:
    $call = /__import__\(\s*['"](os|subprocess|pty|commands|posix|nt)['"]\s*\)\s*\.\s*(system|popen|call|run|Popen|check_output|check_call|getoutput|getstatusoutput|spawn[a-z]{0,3}|exec[a-z]{1,3})\s*\(/
  condition:
    $call
}

rule command_exec_python_oneliner {
  meta:
    id = "command-exec-python-oneliner"
    category = "command_exec"
    severity = "medium"
    description = "python -c one-liner that runs commands or opens sockets"
  strings:
    $oneliner = /\bpython[0-9.]{0,4}\s+-c\s*['"][^\n]{0,80}(os\.system|os\.popen|subprocess|pty\.spawn|import\s+socket|socket\.socket)/
  condition:
    $oneliner
}

rule command_exec_powershell_stealth {
  meta:
    id = "command-exec-powershell-stealth"
    category = "command_exec"
    severity = "medium"
    description = "PowerShell started hidden or with the execution policy bypassed"
  strings:
    $flags = /\b(powershell|pwsh)(\.exe)?\s[^\n]{0,120}(-w(in(dow)?(style)?)?\s+hid(den)?\b|-e(x(ec(utionpolicy)?)?|p)?\s+bypass\b)/ nocase
  condition:
    $flags
}
