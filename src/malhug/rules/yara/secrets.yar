// Where credentials and secrets live on a developer's machine.

rule credential_ssh_key {
  meta:
    id = "credential-ssh-key"
    category = "credential_theft"
    severity = "medium"
    description = "path of an SSH private key (~/.ssh/id_rsa, id_ed25519, ...)"
  strings:
    $key = /\.ssh[\\\/]{1,2}id_(rsa|ed25519|ecdsa|dsa)\b/
  condition:
    $key
}

rule credential_cloud_config {
  meta:
    id = "credential-cloud-config"
    category = "credential_theft"
    severity = "medium"
    description = "cloud CLI credential file (AWS, Google Cloud, Azure)"
  strings:
    $aws = /\.aws[\\\/]{1,2}(credentials|config)\b/
    $gcloud = /gcloud[\\\/]{1,2}(credentials\.db|access_tokens\.db|legacy_credentials|application_default_credentials\.json)/
    $azure = /\.azure[\\\/]{1,2}(accessTokens\.json|msal_token_cache)/
  condition:
    any of them
}

rule credential_container_config {
  meta:
    id = "credential-container-config"
    category = "credential_theft"
    severity = "medium"
    description = "Docker registry or Kubernetes credentials (~/.docker/config.json, ~/.kube/config)"
  strings:
    $docker = /\.docker[\\\/]{1,2}config\.json/
    $kube = /\.kube[\\\/]{1,2}config\b/
  condition:
    any of them
}

rule credential_netrc_git {
  meta:
    id = "credential-netrc-git"
    category = "credential_theft"
    severity = "medium"
    description = "stored login files (.netrc, .git-credentials, .pypirc)"
  strings:
    $netrc = /[\/\\~'"][._]netrc\b/
    $git = ".git-credentials"
    $pypirc = /[\/\\~'"]\.pypirc\b/
  condition:
    any of them
}

rule credential_hf_token_file {
  meta:
    id = "credential-hf-token-file"
    category = "credential_theft"
    severity = "medium"
    description = "Hugging Face access token file (~/.cache/huggingface/token, ~/.huggingface/token)"
  strings:
    $token = /huggingface[\\\/]{1,2}(token|stored_tokens)\b/
  condition:
    $token
}

rule credential_browser_chromium {
  meta:
    id = "credential-browser-chromium"
    category = "credential_theft"
    severity = "medium"
    description = "Chrome/Chromium/Edge/Brave password, cookie or key store"
  strings:
    $profile = /(Chrome|Chromium|Edge|Brave-Browser|BraveSoftware|Opera Software|Vivaldi|User Data)[^\n]{0,80}(Login Data|Cookies|Local State|Web Data)/ nocase
    $default = /Default[\\\/]{1,2}(Login Data|Network[\\\/]{1,2}Cookies|Web Data)/
  condition:
    any of them
}

rule credential_browser_firefox {
  meta:
    id = "credential-browser-firefox"
    category = "credential_theft"
    severity = "medium"
    description = "Firefox saved logins or their key database (logins.json, key4.db)"
  strings:
    $logins = "logins.json"
    $key4 = /\bkey[34]\.db\b/
    $cookies = /(firefox|mozilla)[^\n]{0,120}cookies\.sqlite/ nocase
  condition:
    any of them
}

rule credential_shadow {
  meta:
    id = "credential-shadow"
    category = "credential_theft"
    severity = "medium"
    description = "system password hash file (/etc/shadow)"
  strings:
    $shadow = /\/etc\/g?shadow\b/
  condition:
    $shadow
}

rule credential_env_secret_names {
  meta:
    id = "credential-env-secret-names"
    category = "credential_theft"
    severity = "low"
    description = "name of an environment variable that usually holds an access token"
  strings:
    $names = /\b(HF_TOKEN|HUGGING_FACE_HUB_TOKEN|HUGGINGFACE_TOKEN|AWS_SECRET_ACCESS_KEY|AWS_SESSION_TOKEN|GITHUB_TOKEN|GH_TOKEN|OPENAI_API_KEY|ANTHROPIC_API_KEY|WANDB_API_KEY|AZURE_CLIENT_SECRET|NPM_TOKEN|PYPI_TOKEN)\b/
  condition:
    $names
}

rule credential_crypto_wallet {
  meta:
    id = "credential-crypto-wallet"
    category = "credential_theft"
    severity = "medium"
    description = "cryptocurrency wallet file or wallet browser extension"
  strings:
    $wallet_dat = "wallet.dat" fullword
    $electrum = /Electrum[\\\/]{1,2}wallets/ nocase
    $exodus = /Exodus[\\\/]{1,2}exodus\.wallet/ nocase
    $metamask = "nkbihfbeogaeaoehlefnkodbefgpgknn"
  condition:
    any of them
}

rule credential_cloud_metadata {
  meta:
    id = "credential-cloud-metadata"
    category = "credential_theft"
    severity = "medium"
    description = "cloud instance metadata service, where a machine's cloud credentials can be read"
  strings:
    $aws = "169.254.169.254"
    $gcp = "metadata.google.internal"
    $alibaba = "100.100.100.200"
    $aws6 = "fd00:ec2::254"
  condition:
    any of them
}
