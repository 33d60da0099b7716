/** Sign in with account, login and API key or password (the API's own authentication). */
import { useState } from 'preact/hooks';
import { signIn, signInMessage } from '../api';

export function SignIn({ notice }: { notice?: string }) {
  const [account, setAccount] = useState('');
  const [login, setLogin] = useState('');
  const [secret, setSecret] = useState('');
  const [kind, setKind] = useState<'apikey' | 'password'>('apikey');
  const [error, setError] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      await signIn(account.trim(), login.trim(), secret, kind);
    } catch (err) {
      setError(signInMessage(err));
      setBusy(false);
    }
  };

  return (
    <section class="signin">
      <h1>Sign in</h1>
      {notice && (
        <p class="notice" role="status">
          {notice}
        </p>
      )}
      <form onSubmit={submit} autocomplete="off">
        <label>
          Account
          <input name="account" value={account} onInput={(e) => setAccount(e.currentTarget.value)} required autocomplete="organization" />
        </label>
        <label>
          Login
          <input name="login" value={login} onInput={(e) => setLogin(e.currentTarget.value)} required autocomplete="username" placeholder="admin or host/ci/executor-01" />
        </label>
        <fieldset class="inline">
          <legend>Credential</legend>
          <label>
            <input type="radio" name="kind" value="apikey" checked={kind === 'apikey'} onChange={() => setKind('apikey')} /> API key
          </label>
          <label>
            <input type="radio" name="kind" value="password" checked={kind === 'password'} onChange={() => setKind('password')} /> Password
          </label>
        </fieldset>
        <label>
          {kind === 'apikey' ? 'API key' : 'Password'}
          <input name="secret" type="password" value={secret} onInput={(e) => setSecret(e.currentTarget.value)} required autocomplete={kind === 'password' ? 'current-password' : 'off'} />
        </label>
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" class="primary" disabled={busy}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
      </form>
      <p class="muted small">The access token stays in this tab's memory only; a reload signs you out.</p>
    </section>
  );
}
