package secretcmp

var SecretName = secretName
