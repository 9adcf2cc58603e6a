// Places stolen data is commonly sent to, and the gathering that comes before it.

rule exfil_webhook_site {
  meta:
    id = "exfil-webhook-site"
    category = "exfil_service"
    severity = "medium"
    description = "webhook.site, a public request catcher often used to receive stolen data"
  strings:
    $host = "webhook.site" nocase
  condition:
    $host
}

rule exfil_requestbin {
  meta:
    id = "exfil-requestbin"
    category = "exfil_service"
    severity = "medium"
    description = "RequestBin / Pipedream request catcher endpoint"
  strings:
    $pipedream = /[a-z0-9-]{1,63}\.m\.pipedream\.net/ nocase
    $requestbin = /requestbin\.(com|net|io|fullcontact\.com)/ nocase
  condition:
    any of them
}

rule exfil_ngrok {
  meta:
    id = "exfil-ngrok"
    category = "exfil_service"
    severity = "medium"
    description = "ngrok tunnel hostname, a throwaway public address for a private machine"
  strings:
    $ngrok = /[a-z0-9-]{1,63}\.(ngrok\.io|ngrok\.app|ngrok-free\.app|ngrok-free\.dev|ngrok\.dev)\b/ nocase
  condition:
    $ngrok
}

rule exfil_interactsh {
  meta:
    id = "exfil-interactsh"
    category = "exfil_service"
    severity = "medium"
    description = "interactsh / OAST out-of-band callback domain"
  strings:
    $oast = /[.\/@'"]oast\.(fun|pro|live|site|online|me)\b/ nocase
    $interact = /\binteract\.sh\b/ nocase
  condition:
    any of them
}

rule exfil_burp_collaborator {
  meta:
    id = "exfil-burp-collaborator"
    category = "exfil_service"
    severity = "medium"
    description = "Burp Collaborator out-of-band callback domain"
  strings:
    $burp = "burpcollaborator.net" nocase
    $oastify = "oastify.com" nocase
  condition:
    any of them
}

rule exfil_discord_webhook {
  meta:
    id = "exfil-discord-webhook"
    category = "exfil_service"
    severity = "medium"
    description = "Discord webhook URL, a common drop for stolen tokens"
  strings:
    $hook = /discord(app)?\.com\/api\/(v[0-9]{1,2}\/)?webhooks\// nocase
  condition:
    $hook
}

rule exfil_telegram_bot {
  meta:
    id = "exfil-telegram-bot"
    category = "exfil_service"
    severity = "medium"
    description = "Telegram Bot API endpoint, used to ship data to an attacker's chat"
  strings:
    $bot = "api.telegram.org/bot" nocase
  condition:
    $bot
}

rule exfil_slack_webhook {
  meta:
    id = "exfil-slack-webhook"
    category = "exfil_service"
    severity = "medium"
    description = "Slack incoming-webhook URL"
  strings:
    $hook = "hooks.slack.com/services/" nocase
  condition:
    $hook
}

rule exfil_paste_raw {
  meta:
    id = "exfil-paste-raw"
    category = "exfil_service"
    severity = "medium"
    description = "raw paste-site URL, used to stage payloads or drop data"
  strings:
    $pastebin = "pastebin.com/raw" nocase
    $pasteee = "paste.ee/r/" nocase
  condition:
    any of them
}

rule exfil_transfer_sh {
  meta:
    id = "exfil-transfer-sh"
    category = "exfil_service"
    severity = "medium"
    description = "transfer.sh anonymous file upload service"
  strings:
    $host = /:\/\/([a-z0-9-]{1,63}\.)?transfer\.sh\b/ nocase
  condition:
    $host
}

rule ipv4_endpoint {
  meta:
    id = "ipv4-endpoint"
    category = "recon_exfil"
    severity = "low"
    description = "hard-coded IPv4 address with a port or in a URL"
  strings:
    $hostport = /\b[1-9][0-9]{0,2}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}:[0-9]{2,5}\b/
    $tuple = /\(\s*['"][1-9][0-9]{0,2}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}['"]\s*,\s*[0-9]{2,5}\s*\)/
    $url = /[a-z]{3,5}:\/\/[1-9][0-9]{0,2}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}[\/'"?]/
  condition:
    any of them
}

rule recon_curl_upload {
  meta:
    id = "recon-curl-upload"
    category = "recon_exfil"
    severity = "medium"
    description = "curl posts or uploads a local file (-d @file, -F x=@file, -T file)"
  strings:
    $post = /\bcurl\s([^\n]{0,200}\s)?(-d|--data(-binary|-raw|-urlencode)?|-F|--form)\s*['"]?[A-Za-z0-9_.-]{0,40}=?@['"]?[\/~$.A-Za-z]/
    $upload = /\bcurl\s([^\n]{0,200}\s)?(-T|--upload-file)\s*['"]?[\/~$]/
  condition:
    any of them
}

rule recon_environment_dump {
  meta:
    id = "recon-environment-dump"
    category = "recon_exfil"
    severity = "medium"
    description = "serialises the whole process environment (often holding tokens) or pipes it to a network tool"
  strings:
    $python = /\b(json\.dumps|str|repr|pickle\.dumps|b64encode)\(\s*(dict\(\s*)?os\.environb?\s*\)/
    $shell = /\b(printenv|env|set)\s*\|\s*(curl|nc|ncat|wget|base64)\b/
  condition:
    any of them
}

rule recon_host_survey {
  meta:
    id = "recon-host-survey"
    category = "recon_exfil"
    severity = "low"
    description = "collects several facts about the host (user, host name, system, network)"
  strings:
    $whoami = "whoami" fullword
    $uname = "uname -a"
    $hostname = "socket.gethostname()"
    $getuser = "getpass.getuser()"
    $node = "platform.node()"
    $login = "os.getlogin()"
    $passwd = "/etc/passwd"
    $ifconfig = "ifconfig" fullword
    $ipaddr = "ip addr"
    $hostname_i = "hostname -I"
  condition:
    3 of them
}
